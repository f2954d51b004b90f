"""--data durability: everything acknowledged survives kill -9 and a restart on the same
directory, and permanent IDs keep increasing across restarts."""

import asyncio

import pytest
from autobahn.wamp import message as wamp_message
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from wamp_client import abort_transport, connect, run, wait_for

ACK_RETAIN = PublishOptions(acknowledge=True, retain=True)


async def retained_under(router, prefix):
    s = await connect(router)
    got = {}
    await s.subscribe(lambda v, details=None: got.__setitem__(details.topic, (v, details.publication)),
                      prefix, options=SubscribeOptions(match="prefix", get_retained=True, details=True))
    await asyncio.sleep(0.3)  # retained events arrive right after SUBSCRIBED
    s.leave()
    return got


def test_acknowledged_retained_survive_kill9(router_factory, tmp_path):
    data = str(tmp_path / "data")
    first = router_factory(args=["--data", data])

    async def publish_until_killed():
        s = await connect(first)
        acked = {}
        for i in range(300):
            pub = await s.publish(f"dur.k{i}", i, options=ACK_RETAIN)
            acked[f"dur.k{i}"] = (i, pub.id)
        # keep publishing without waiting while the process dies
        for i in range(300, 400):
            s.publish(f"dur.k{i}", i, options=PublishOptions(retain=True))
        first.kill9()
        return acked

    acked = run(publish_until_killed())
    ids = [pid for _, pid in acked.values()]
    assert ids == sorted(ids) and len(set(ids)) == 300

    second = router_factory(args=["--data", data])

    async def check():
        got = await retained_under(second, "dur.")
        for topic, (value, pid) in acked.items():
            assert topic in got, f"acknowledged retained {topic} lost"
            assert got[topic] == (value, pid)
        s = await connect(second)
        pub = await s.publish("dur.after", 1, options=ACK_RETAIN)
        assert pub.id > max(ids), "IDs went backwards after a restart"
        s.leave()

    run(check())


def test_clearing_a_retained_key_is_durable(router_factory, tmp_path):
    data = str(tmp_path / "data")
    first = router_factory(args=["--data", data])

    async def write():
        s = await connect(first)
        await s.publish("clr.a", "x", options=ACK_RETAIN)
        await s.publish("clr.b", "y", options=ACK_RETAIN)
        await s.publish("clr.a", options=ACK_RETAIN)  # no arguments: clears the key
        first.kill9()

    run(write())
    second = router_factory(args=["--data", data])
    got = run(retained_under(second, "clr."))
    assert set(got) == {"clr.b"}


async def hold_with_wills(router, other_will):
    """A session holding `res.lock` (will: clear it) and `res.other` (will: `other_will`)."""
    s = await connect(router)
    s.extra_options[wamp_message.Publish] = {"when": None, "watch": True, "will": None}
    await s.publish("res.lock", "holder", options=ACK_RETAIN)
    s.extra_options[wamp_message.Publish] = {"will": other_will}
    await s.publish("res.other", "held", options=ACK_RETAIN)
    return s


def test_wills_of_sessions_that_died_with_the_process_apply_at_restart(router_factory, tmp_path):
    data = str(tmp_path / "data")
    first = router_factory(args=["--data", data])

    async def take_lock():
        await hold_with_wills(first, "orphaned")
        first.kill9()

    run(take_lock())
    second = router_factory(args=["--data", data])
    got = run(retained_under(second, "res."))
    assert "res.lock" not in got, "a will of null clears the key at restart"
    assert got["res.other"][0] == "orphaned"

    async def relock():
        s = await connect(second)
        s.extra_options[wamp_message.Publish] = {"when": None}
        await s.publish("res.lock", "new-holder", options=ACK_RETAIN)

    run(relock())


@pytest.mark.parametrize("end", ["sigterm", "dropped"])
def test_a_will_that_fired_is_durable_and_a_restart_finds_the_lock_free(router_factory, tmp_path, end):
    """A will that fired is stored like a client's write, so a restart does not bring back
    the value it replaced. `sigterm`: the router's GOODBYE at shutdown counts as an
    abnormal end (the client did not choose to leave), and the store is flushed before
    the process exits; `dropped`: the holder's connection drops, then the router is
    killed with -9."""
    data = str(tmp_path / "data")
    first = router_factory(args=["--data", data])

    async def take_lock():
        s = await hold_with_wills(first, "released")
        if end == "sigterm":
            assert first.terminate() == 0  # while the session is open
            return
        abort_transport(s)
        for _ in range(20):
            seen = await retained_under(first, "res.")
            if "res.lock" not in seen and seen.get("res.other", [None])[0] == "released":
                break
        assert "res.lock" not in seen and seen["res.other"][0] == "released", seen
        watcher = await connect(first)
        # Acknowledged once durable, and written after the wills: they are durable too.
        await watcher.publish("res.barrier", 1, options=ACK_RETAIN)
        first.kill9()

    run(take_lock())
    second = router_factory(args=["--data", data])
    got = run(retained_under(second, "res."))
    assert "res.lock" not in got, "the will of null cleared the lock"
    assert got["res.other"][0] == "released"


def test_mqtt_puback_means_durable(router_factory, tmp_path):
    """With --data, every MQTT QoS 1 retained message that got its PUBACK survives kill -9.
    (The router also holds PUBACK until the group fsync; that ordering window is too short to
    observe from here without fault injection, so this test checks the outcome only.)"""
    import paho.mqtt.client as mqtt

    data = str(tmp_path / "data")
    first = router_factory(args=["--data", data])
    host, port = first.mqtt
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="durable-pub")
    c.max_inflight_messages_set(100)
    c.connect(host, port)
    c.loop_start()
    infos = [c.publish(f"mq/k{i}", f"v{i}", qos=1, retain=True) for i in range(200)]
    for info in infos:
        info.wait_for_publish(timeout=10)
    acked = [i for i, info in enumerate(infos) if info.is_published()]
    assert len(acked) == 200
    first.kill9()
    c.loop_stop()

    second = router_factory(args=["--data", data])
    got = {}
    s = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="durable-sub")
    s.on_message = lambda _c, _u, m: got.__setitem__(m.topic, m.payload.decode())
    host, port = second.mqtt
    s.connect(host, port)
    s.subscribe("mq/#", qos=1)
    s.loop_start()
    import time
    deadline = time.monotonic() + 10
    while len(got) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    s.loop_stop()
    missing = [i for i in acked if got.get(f"mq/k{i}") != f"v{i}"]
    assert not missing, f"acknowledged but lost: {missing[:10]}"


def test_acknowledged_history_survives_kill9_in_order(router_factory, tmp_path):
    """Publishes with acknowledge from two sessions, some still in flight when the process
    dies; after a restart SUBSCRIBE after=0 replays every acknowledged one, in ID order, with
    the same IDs, and new IDs are above them."""
    data = str(tmp_path / "data")
    first = router_factory(args=["--data", data])

    async def publish_until_killed():
        a, b = await connect(first), await connect(first)
        acked = {}

        async def flood(session, name):
            for i in range(10_000):
                try:
                    pub = await session.publish("dur.h", f"{name}{i}", options=PublishOptions(acknowledge=True))
                except Exception:
                    return
                acked[f"{name}{i}"] = pub.id

        tasks = [asyncio.ensure_future(flood(a, "a")), asyncio.ensure_future(flood(b, "b"))]
        await asyncio.sleep(0.8)
        first.kill9()
        await asyncio.wait(tasks, timeout=5)
        return acked

    acked = run(publish_until_killed())
    assert len(acked) > 20
    second = router_factory(args=["--data", data])

    async def check():
        s = await connect(second)
        got = []
        s.extra_options[wamp_message.Subscribe] = {"after": 0}
        await s.subscribe(lambda v, details=None: got.append((v, details.publication)), "dur.h",
                          options=SubscribeOptions(details=True))
        s.extra_options.pop(wamp_message.Subscribe, None)
        await wait_for(lambda: len(got) >= len(acked))
        ids = [pid for _, pid in got]
        assert ids == sorted(ids) and len(set(ids)) == len(ids), "replayed in ID order, once"
        replayed = dict(got)
        for value, pid in acked.items():
            assert replayed.get(value) == pid, f"acknowledged {value} (ID {pid}) missing after restart"
        pub = await s.publish("dur.h", "after", options=PublishOptions(acknowledge=True))
        assert pub.id > max(ids)

    run(check())
