"""MQTT 5.0 features, spec-driven (the ground of paho.mqtt.testing's client_test5.py):
flow control, session expiry, topic aliases, subscription identifiers, no local, retain
as published, retain handling, message expiry, properties passed through, maximum packet
size, server keep alive, will delay, reason codes."""

import queue
import struct
import time

from paho.mqtt.packettypes import PacketTypes

from mqtt_client import Client, Raw, connect_packet, new_id, props, publish_fields, publish_packet, varint


def rc_value(rc):
    return int(getattr(rc, "value", rc))


def pub_props(**fields):
    return props(PacketTypes.PUBLISH, **fields)


def test_receive_maximum_flow_control(router):
    sub = Client(router, new_id(), 5, manual_ack=True)
    sub.connect(properties=props(ReceiveMaximum=2))
    sub.subscribe("flow/x", qos=1)
    pub = Client(router, new_id(), 5)
    pub.connect()
    for i in range(5):
        pub.publish("flow/x", str(i).encode(), qos=1)
    first = [sub.get(), sub.get()]
    sub.expect_none(0.7)
    sub.c.ack(first[0].mid, 1)
    third = sub.get()
    assert [m.payload for m in first + [third]] == [b"0", b"1", b"2"]
    for m in [first[1], third]:
        sub.c.ack(m.mid, 1)
    rest = [sub.get().payload for _ in range(2)]
    assert rest == [b"3", b"4"]


def test_session_expiry(router):
    cid = new_id("expiry")
    c = Client(router, cid, 5, clean=False)
    c.connect(properties=props(SessionExpiryInterval=3))
    c.subscribe("exp/x", qos=1)
    c.disconnect()
    c2 = Client(router, cid, 5, clean=False)
    present, _, _ = c2.connect(properties=props(SessionExpiryInterval=2))
    assert present, "resumed within the expiry"
    c2.disconnect()
    time.sleep(3)
    c3 = Client(router, cid, 5, clean=False)
    present, _, _ = c3.connect(properties=props(SessionExpiryInterval=2))
    assert not present, "expired"


def test_session_expiry_zero_ends_with_connection(router):
    cid = new_id()
    c = Client(router, cid, 5, clean=False)
    c.connect()
    c.subscribe("exp0/x", qos=1)
    c.disconnect()
    c2 = Client(router, cid, 5, clean=False)
    assert c2.connect()[0] is False


def test_inbound_topic_alias(router):
    sub = Client(router, new_id(), 5)
    sub.connect()
    sub.subscribe("alias/#", qos=1)
    raw = Raw(router)
    raw.send(connect_packet(new_id(), version=5))
    raw.expect(2)
    alias = b"\x23" + struct.pack("!H", 3)
    raw.send(publish_packet("alias/long/topic", b"1", qos=1, packet_id=1, version=5, properties=alias))
    raw.expect(4)
    raw.send(publish_packet("", b"2", qos=1, packet_id=2, version=5, properties=alias))
    raw.expect(4)
    assert [(m.topic, m.payload) for m in (sub.get(), sub.get())] == [("alias/long/topic", b"1"),
                                                                      ("alias/long/topic", b"2")]
    raw.send(publish_packet("", b"3", qos=1, packet_id=3, version=5, properties=b"\x23\x00\x09"))
    p = raw.expect(14)
    assert p[2][0] == 0x82, "unknown alias: protocol error"


def test_topic_alias_above_maximum_is_0x94(router):
    raw = Raw(router)
    raw.send(connect_packet(new_id(), version=5))
    _, _, body = raw.expect(2)
    raw.send(publish_packet("t", b"x", version=5, properties=b"\x23\xff\xff"))
    p = raw.expect(14)
    assert p[2][0] == 0x94


def test_outbound_topic_aliases(router):
    raw = Raw(router)
    raw.send(connect_packet(new_id(), version=5, properties=b"\x22\x00\x05"))
    raw.expect(2)
    raw.send(b"\x82" + varint(len(b"\x00\x01\x00" + b"\x00\x05oa/xy\x00")) + b"\x00\x01\x00\x00\x05oa/xy\x00")
    raw.expect(9)
    pub = Client(router, new_id(), 5)
    pub.connect()
    pub.publish("oa/xy", b"1")
    pub.publish("oa/xy", b"2")
    first = raw.expect(3)
    second = raw.expect(3)
    assert publish_fields(first, 5)[0] == "oa/xy"
    assert b"\x23\x00\x01" in first[2]
    assert publish_fields(second, 5)[0] == "", "second use sends the alias alone"
    assert publish_fields(second, 5)[2] == b"2"


def test_subscription_identifiers(router):
    c = Client(router, new_id(), 5)
    c.connect()
    c.subscribe("sid/+", qos=1, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=7))
    c.subscribe("sid/#", qos=1, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=9))
    pub = Client(router, new_id(), 5)
    pub.connect()
    pub.publish("sid/a", b"x", qos=1)
    assert sorted(c.get().properties.SubscriptionIdentifier) == [7, 9], "one copy, both identifiers"
    c.expect_none()


def test_no_local(router):
    c = Client(router, new_id(), 5)
    c.connect()
    c.subscribe("nl/x", qos=1, noLocal=True)
    c.publish("nl/x", b"mine", qos=1)
    c.expect_none()
    other = Client(router, new_id(), 5)
    other.connect()
    other.publish("nl/x", b"theirs", qos=1)
    assert c.get().payload == b"theirs"


def test_retain_as_published(router):
    pub = Client(router, new_id(), 5)
    pub.connect()
    a = Client(router, new_id(), 5)
    a.connect()
    a.subscribe("rap/x", qos=1, retainAsPublished=True)
    b = Client(router, new_id(), 5)
    b.connect()
    b.subscribe("rap/x", qos=1)
    pub.publish("rap/x", b"r", qos=1, retain=True)
    assert a.get().retain is True
    assert b.get().retain is False


def test_retain_handling(router):
    pub = Client(router, new_id(), 5)
    pub.connect()
    pub.publish("rh/x", b"kept", qos=1, retain=True)
    c = Client(router, new_id(), 5)
    c.connect()
    c.subscribe("rh/x", qos=1, retainHandling=2)
    c.expect_none()
    d = Client(router, new_id(), 5)
    d.connect()
    d.subscribe("rh/x", qos=1, retainHandling=1)
    assert d.get().payload == b"kept"
    d.subscribe("rh/x", qos=1, retainHandling=1)
    d.expect_none()
    d.subscribe("rh/x", qos=1, retainHandling=0)
    assert d.get().payload == b"kept"


def test_message_expiry(router):
    pub = Client(router, new_id(), 5)
    pub.connect()
    pub.publish("mx/short", b"s", qos=1, retain=True, properties=pub_props(MessageExpiryInterval=1))
    pub.publish("mx/long", b"l", qos=1, retain=True, properties=pub_props(MessageExpiryInterval=100))
    time.sleep(1.3)
    c = Client(router, new_id(), 5)
    c.connect()
    c.subscribe("mx/+", qos=1)
    m = c.get()
    assert m.topic == "mx/long"
    assert 1 <= m.properties.MessageExpiryInterval <= 99
    c.expect_none()


def test_properties_passed_through_with_fox_id(router):
    c = Client(router, new_id(), 5)
    c.connect()
    # The permanent ID is opt-in: this subscription asks for it.
    c.subscribe("pp/x", qos=1, properties=props(PacketTypes.SUBSCRIBE, UserProperty=[("fox-id", "true")]))
    pub = Client(router, new_id(), 5)
    pub.connect()
    p = pub_props(PayloadFormatIndicator=1, ContentType="text/plain", ResponseTopic="pp/reply",
                  CorrelationData=b"\x01\x02", UserProperty=[("k", "v"), ("k", "w")])
    pub.publish("pp/x", "héllo".encode(), qos=1, properties=p)
    m = c.get()
    mp = m.properties
    assert mp.PayloadFormatIndicator == 1
    assert mp.ContentType == "text/plain"
    assert mp.ResponseTopic == "pp/reply"
    assert mp.CorrelationData == b"\x01\x02"
    users = mp.UserProperty
    assert users[:2] == [("k", "v"), ("k", "w")]
    fox = dict(users[2:])["fox-id"]
    assert 1 <= int(fox) <= 2**53


def test_maximum_packet_size(router):
    c = Client(router, new_id(), 5)
    c.connect(properties=props(MaximumPacketSize=200))
    c.subscribe("mps/x", qos=1)
    pub = Client(router, new_id(), 5)
    pub.connect()
    pub.publish("mps/x", b"x" * 500, qos=1)
    pub.publish("mps/x", b"small", qos=1)
    assert c.get().payload == b"small"


def test_oversized_packet_from_client_is_0x95(router_factory):
    router = router_factory("[limits]\nmessage_size_max_bytes = 1000\n")
    c = Client(router, new_id(), 5)
    _, _, p = c.connect()
    assert p.MaximumPacketSize == 1000 + 64 * 1024, "the payload limit and room for the rest"
    raw = Raw(router)
    raw.send(connect_packet(new_id(), version=5))
    raw.expect(2)
    raw.send(publish_packet("big", b"x" * (1000 + 64 * 1024), version=5))
    p = raw.expect(14)
    assert p[2][0] == 0x95


def test_server_keep_alive(router_factory):
    router = router_factory("[limits]\nmqtt_keep_alive_max_secs = 10\n")
    c = Client(router, new_id(), 5)
    _, _, p = c.connect(keepalive=60)
    assert p.ServerKeepAlive == 10


def test_will_delay_cancelled_by_reconnect(router):
    watcher = Client(router, new_id(), 5)
    watcher.connect()
    watcher.subscribe("wd/#", qos=1)
    cid = new_id("wd")
    will_props = props(PacketTypes.WILLMESSAGE, WillDelayInterval=2)
    c = Client(router, cid, 5, clean=False)
    c.connect(properties=props(SessionExpiryInterval=30),
              will={"topic": "wd/a", "payload": b"late", "qos": 1, "properties": will_props})
    c.kill()
    time.sleep(0.5)
    c2 = Client(router, cid, 5, clean=False)
    assert c2.connect(properties=props(SessionExpiryInterval=30))[0]
    watcher.expect_none(2.5)


def test_will_delay_published_after_delay(router):
    watcher = Client(router, new_id(), 5)
    watcher.connect()
    watcher.subscribe("wd2/#", qos=1)
    will_props = props(PacketTypes.WILLMESSAGE, WillDelayInterval=1)
    c = Client(router, new_id(), 5, clean=False)
    c.connect(properties=props(SessionExpiryInterval=30),
              will={"topic": "wd2/a", "payload": b"late", "qos": 1, "properties": will_props})
    started = time.monotonic()
    c.kill()
    m = watcher.get(5)
    assert m.payload == b"late"
    assert time.monotonic() - started >= 0.9


def test_disconnect_with_will_message(router):
    watcher = Client(router, new_id(), 5)
    watcher.connect()
    watcher.subscribe("dww/#", qos=1)
    c = Client(router, new_id(), 5)
    c.connect(will={"topic": "dww/a", "payload": b"asked", "qos": 1})
    c.c.disconnect(reasoncode=__import__("paho.mqtt.reasoncodes", fromlist=["ReasonCode"]).ReasonCode(
        PacketTypes.DISCONNECT, identifier=4))
    assert watcher.get().payload == b"asked"


def test_subscribe_denied_topic(router_factory):
    config = """
[auth]
anonymous = false

[[role]]
name = "device"
permissions = [ { uri = "dev.", match = "prefix", publish = true, subscribe = true } ]

[[user]]
authid = "joe"
secret = "pw"
role = "device"
"""
    router = router_factory(config)
    for version, denied in ((5, 0x87), (4, 0x80)):
        c = Client(router, new_id(), version)
        assert c.connect(username="joe", password="pw")[1] == 0
        rcs = c.subscribe("secret/x", qos=1)
        assert rc_value(rcs[0]) == denied
        assert rc_value(c.subscribe("dev/x", qos=1)[0]) == 1
        c.publish("secret/x", b"no", qos=1)
        c.publish("dev/x", b"yes", qos=1)
        assert c.get().payload == b"yes"
        c.disconnect()
    bad = Client(router, new_id(), 5)
    assert rc_value(bad.connect(username="joe", password="wrong")[1]) == 0x86
    anon = Client(router, new_id(), 4)
    # paho reports the 3.1.1 return code 5 as reason code 0x87.
    assert rc_value(anon.connect()[1]) in (5, 0x87)


def test_publish_denied_gets_0x87(router_factory):
    config = """
[[role]]
name = "anonymous"
permissions = [ { uri = "open.", match = "prefix", publish = true, subscribe = true } ]
"""
    router = router_factory(config)
    c = Client(router, new_id(), 5)
    c.connect()
    info = c.c.publish("closed/x", b"x", qos=1)
    info.wait_for_publish(5)
    raw = Raw(router)
    raw.send(connect_packet(new_id(), version=5))
    raw.expect(2)
    raw.send(publish_packet("closed/x", b"x", qos=1, packet_id=5, version=5))
    _, _, body = raw.expect(4)
    assert body[2] == 0x87


def test_realm_from_username(router_factory):
    config = """
[[user]]
authid = "joe"
secret = "pw"
role = "anonymous"
"""
    router = router_factory(config)
    a = Client(router, new_id(), 5)
    a.connect(username="joe@r2", password="pw")
    a.subscribe("realm/x", qos=1)
    b = Client(router, new_id(), 5)
    b.connect()  # anonymous: realm1
    b.publish("realm/x", b"other realm", qos=1)
    a.expect_none()
    c = Client(router, new_id(), 5)
    c.connect(username="joe@r2", password="pw")
    c.publish("realm/x", b"same realm", qos=1)
    assert a.get().payload == b"same realm"
