"""MQTT persistent sessions with --data: subscriptions, queued messages, unacknowledged
messages and pending wills survive kill -9 and a restart on the same directory."""

import time

import pytest
from paho.mqtt.packettypes import PacketTypes

from mqtt_client import (Client, Raw, ack_packet, connect_packet, new_id, props, publish_fields,
                         publish_packet, subscribe_packet)


def store_barrier(router):
    """Waits until what the router has queued for the store so far is durable: writes apply
    in order, and a QoS 1 PUBACK waits for the fsync of its message (the short pause lets
    the router finish handling what the other connections just did)."""
    time.sleep(0.2)
    c = Client(router, new_id("barrier"), 4)
    c.connect()
    c.publish("barrier/x", b"b", qos=1)
    c.disconnect()


def persistent(router, cid, version):
    c = Client(router, cid, version, clean=False)
    properties = props(SessionExpiryInterval=300) if version == 5 else None
    return c, properties


@pytest.mark.parametrize("version", [4, 5])
def test_offline_session_and_its_queue_survive_kill9(router_factory, tmp_path, version):
    data = str(tmp_path / "data")
    first = router_factory(args=["--data", data])
    cid = new_id("durable")
    c, properties = persistent(first, cid, version)
    assert c.connect(properties=properties)[:2] == (False, 0)
    c.subscribe("dur/+", qos=1)
    c.subscribe("dur2/#", qos=2)
    c.disconnect()
    pub = Client(first, new_id(), version)
    pub.connect()
    for i in range(5):
        pub.publish(f"dur/{i}", str(i).encode(), qos=1)
    pub.publish("dur2/x", b"two", qos=2)
    pub.publish("dur/q0", b"zero", qos=0)
    pub.publish("other/t", b"not subscribed", qos=1)
    store_barrier(first)
    first.kill9()

    second = router_factory(args=["--data", data])
    c2, properties = persistent(second, cid, version)
    present, rc, _ = c2.connect(properties=properties)
    assert (present, rc) == (True, 0), "the session survived the restart"
    got = [c2.get() for _ in range(6)]
    assert [m.payload for m in got if m.qos == 1] == [b"0", b"1", b"2", b"3", b"4"], "in order"
    assert [(m.topic, m.payload, m.qos) for m in got if m.qos == 2] == [("dur2/x", b"two", 2)]
    # QoS 0 messages are not kept for an offline session across a restart
    c2.expect_none(0.3)
    # the subscriptions are live again
    pub2 = Client(second, new_id(), version)
    pub2.connect()
    pub2.publish("dur/after", b"live", qos=1)
    m = c2.get()
    assert (m.topic, m.payload) == ("dur/after", b"live")
    c2.expect_none(0.3)
    c2.disconnect()


def test_unacknowledged_messages_of_a_connected_session_come_back(router_factory, tmp_path):
    """A session connected at the crash: what it had acknowledged (and the store had written)
    does not come back; what it had not acknowledged does, in order."""
    data = str(tmp_path / "data")
    first = router_factory(args=["--data", data])
    cid = new_id("unacked")
    raw = Raw(first)
    raw.send(connect_packet(cid, clean=False))
    raw.expect(2)
    raw.send(subscribe_packet(1, "ua/+", 1))
    raw.expect(9)
    pub = Client(first, new_id(), 4)
    pub.connect()
    for i in range(3):
        pub.publish(f"ua/{i}", str(i).encode(), qos=1)
    got = [publish_fields(raw.expect(3)) for _ in range(3)]
    assert [g[2] for g in got] == [b"0", b"1", b"2"]
    time.sleep(1.1)  # the watermark is written at most once a second
    raw.send(ack_packet("puback", got[0][1]))
    # a QoS 1 publish on the same connection is handled after that PUBACK, and acknowledged
    # once a later write is durable: so is the watermark the PUBACK moved
    raw.send(publish_packet("side/x", b"s", qos=1, packet_id=77))
    raw.expect(4)
    first.kill9()
    raw.close()

    second = router_factory(args=["--data", data])
    raw2 = Raw(second)
    raw2.send(connect_packet(cid, clean=False))
    _, _, body = raw2.expect(2)
    assert body[0] == 1, "session present"
    again = [publish_fields(raw2.expect(3)) for _ in range(2)]
    assert [(a[0], a[2]) for a in again] == [("ua/1", b"1"), ("ua/2", b"2")]
    for a in again:
        raw2.send(ack_packet("puback", a[1]))
    with pytest.raises(TimeoutError):
        raw2.read(timeout=0.4)
    raw2.close()


def test_will_of_a_client_connected_at_the_crash_is_published_at_restart(router_factory, tmp_path):
    data = str(tmp_path / "data")
    first = router_factory(args=["--data", data])
    topic = f"wills/{new_id()}"
    dying = Client(first, new_id("dying"), 4)
    dying.connect(will={"topic": topic, "payload": b"gone", "qos": 1, "retain": True})
    clean = Client(first, new_id("clean"), 4)
    clean.connect(will={"topic": topic + "/clean", "payload": b"no", "qos": 1, "retain": True})
    clean.disconnect()  # a clean DISCONNECT: its will is not due, now or after a restart
    store_barrier(first)
    first.kill9()

    second = router_factory(args=["--data", data])
    sub = Client(second, new_id(), 4)
    sub.connect()
    sub.subscribe(topic + "/clean", qos=1)
    sub.subscribe(topic, qos=1)
    m = sub.get()
    assert (m.topic, m.payload, m.retain) == (topic, b"gone", True)
    sub.expect_none(0.3)


def test_delayed_will_of_a_parked_session_survives_and_fires(router_factory, tmp_path):
    data = str(tmp_path / "data")
    first = router_factory(args=["--data", data])
    topic = f"wills/{new_id()}"
    c = Client(first, new_id("delayed"), 5, clean=False)
    will_props = props(PacketTypes.WILLMESSAGE, WillDelayInterval=2)
    c.connect(properties=props(SessionExpiryInterval=60),
              will={"topic": topic, "payload": b"late", "qos": 1, "retain": True,
                    "properties": will_props})
    c.kill()  # abnormal end: the will waits 2 s
    store_barrier(first)
    first.kill9()

    second = router_factory(args=["--data", data])
    sub = Client(second, new_id(), 5)
    sub.connect()
    sub.subscribe(topic, qos=1)
    m = sub.get(timeout=5.0)
    assert (m.topic, m.payload) == (topic, b"late")


def test_expired_session_is_not_restored(router_factory, tmp_path):
    data = str(tmp_path / "data")
    first = router_factory(args=["--data", data])
    cid = new_id("short")
    c = Client(first, cid, 5, clean=False)
    c.connect(properties=props(SessionExpiryInterval=1))
    c.subscribe("short/t", qos=1)
    c.disconnect()
    store_barrier(first)
    first.kill9()
    time.sleep(1.0)

    second = router_factory(args=["--data", data])
    c2 = Client(second, cid, 5, clean=False)
    present, rc, _ = c2.connect(properties=props(SessionExpiryInterval=1))
    assert (present, rc) == (False, 0), "the session had expired"
    c2.disconnect()


def test_acknowledged_messages_reach_a_persistent_subscriber_across_crashes(router_factory, tmp_path):
    """Rounds of: a QoS 1 publisher running flat out, a persistent subscriber connected,
    kill -9 at a random moment, restart on the same directory. In the end the subscriber has
    every message whose PUBACK the publisher got (at least once)."""
    import random
    import threading

    data = str(tmp_path / "data")
    sub_id = new_id("soak-sub")
    acked, received = set(), []
    rng = random.Random(7)
    seq = 0
    for round_no in range(4):
        router = router_factory(args=["--data", data])
        sub, properties = persistent(router, sub_id, 5)
        sub.connect(properties=properties)
        if round_no == 0:
            sub.subscribe("soak/#", qos=1)
        pub = Client(router, new_id("soak-pub"), 5)
        pub.connect()
        stop = threading.Event()

        def publish():
            nonlocal seq
            while not stop.is_set():
                seq += 1
                try:
                    info = pub.c.publish(f"soak/{seq % 3}", str(seq).encode(), qos=1)
                    info.wait_for_publish(2.0)
                except (RuntimeError, ValueError):
                    return
                if not info.is_published():
                    return
                acked.add(seq)

        worker = threading.Thread(target=publish, daemon=True)
        worker.start()
        time.sleep(rng.uniform(0.2, 0.6))
        router.kill9()
        stop.set()
        worker.join(5.0)
        pub.kill()
        sub.kill()
        while not sub.messages.empty():
            received.append(int(sub.messages.get().payload))

    assert len(acked) > 50, "the publisher got acknowledgements"
    router = router_factory(args=["--data", data])
    sub, properties = persistent(router, sub_id, 5)
    present, rc, _ = sub.connect(properties=properties)
    assert (present, rc) == (True, 0)
    deadline = time.monotonic() + 10.0
    while not acked <= set(received) and time.monotonic() < deadline:
        try:
            received.append(int(sub.get(timeout=0.5).payload))
        except Exception:
            pass
    missing = sorted(acked - set(received))
    assert not missing, f"{len(missing)} acknowledged messages never delivered, e.g. {missing[:10]}"
    sub.disconnect()
