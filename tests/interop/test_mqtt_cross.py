"""One topic space: autobahn-python (WAMP) and paho-mqtt together on one router. MQTT to
WAMP, WAMP to MQTT, wildcards across the boundary, retained state and wills shared,
one permanent ID, and the `.` / `/` escaping."""

import asyncio

from autobahn.wamp.types import PublishOptions, SubscribeOptions

from mqtt_client import Client, new_id, props
from wamp_client import connect, run, wait_for


def mqtt_client(router, version=5, properties=None):
    c = Client(router, new_id(), version)
    c.connect(properties=properties)
    return c


async def get_async(client, timeout=5.0):
    return await asyncio.get_event_loop().run_in_executor(None, client.get, timeout)


def test_mqtt_to_wamp_payload_mapping(router):
    async def main():
        w = await connect(router)
        got = []
        await w.subscribe(lambda *a, **kw: got.append((a, kw)), "x2w.sensor.temp")
        m = mqtt_client(router)
        m.publish("x2w/sensor/temp", b'{"c": 21.5}', qos=1)
        m.publish("x2w/sensor/temp", b"\xff\x00binary", qos=1)
        await wait_for(lambda: len(got) == 2)
        assert got[0] == (({"c": 21.5},), {})
        assert got[1] == ((b"\xff\x00binary",), {})
        w.leave()

    run(main())


def test_wamp_to_mqtt_payload_mapping(router):
    async def main():
        m = mqtt_client(router, 4)
        m.subscribe("w2x/#", qos=1)
        w = await connect(router)
        ack = PublishOptions(acknowledge=True)
        await w.publish("w2x.one", "hi", options=ack)
        await w.publish("w2x.many", 1, 2, k=True, options=ack)
        await w.publish("w2x.bin", b"\x00\x01", options=ack)
        first, second, third = [await get_async(m) for _ in range(3)]
        assert (first.topic, first.payload) == ("w2x/one", b'"hi"')
        assert second.topic == "w2x/many"
        assert __import__("json").loads(second.payload) == {"args": [1, 2], "kwargs": {"k": True}}
        assert third.payload == b"\x00\x01"
        w.leave()

    run(main())


def test_wildcards_across_the_boundary(router):
    async def main():
        w = await connect(router)
        wild, prefix = [], []
        await w.subscribe(lambda *a: wild.append(a), "wc..temp", options=SubscribeOptions(match="wildcard"))
        await w.subscribe(lambda *a: prefix.append(a), "wc.", options=SubscribeOptions(match="prefix"))
        m = mqtt_client(router)
        m.subscribe("wc/+/temp", qos=1)
        m.publish("wc/kitchen/temp", b"1", qos=1)
        m.publish("wc/kitchen/hum", b"2", qos=1)
        await wait_for(lambda: len(wild) == 1 and len(prefix) == 2)
        assert wild == [(1,)]
        got = await get_async(m)
        assert (got.topic, got.payload) == ("wc/kitchen/temp", b"1")
        await w.publish("wc.hall.temp", 3, options=PublishOptions(acknowledge=True))
        got = await get_async(m)
        assert (got.topic, got.payload) == ("wc/hall/temp", b"3")
        w.leave()

    run(main())


def test_dot_and_slash_are_swapped_not_collided(router):
    async def main():
        w = await connect(router)
        got = []
        await w.subscribe(lambda *a, details=None: got.append(details.topic), "esc.",
                          options=SubscribeOptions(match="prefix", details_arg="details"))
        m = mqtt_client(router)
        m.publish("esc/v1.2/x", b"1", qos=1)
        m.publish("esc/v1/2/x", b"2", qos=1)
        await wait_for(lambda: len(got) == 2)
        assert got == ["esc.v1/2.x", "esc.v1.2.x"]
        m.subscribe("esc/#", qos=1)
        await w.publish("esc.a/b", 1, options=PublishOptions(acknowledge=True))
        assert (await get_async(m)).topic == "esc/a.b"
        w.leave()

    run(main())


def test_retained_across_the_boundary(router):
    async def main():
        m = mqtt_client(router)
        m.publish("rx/from_mqtt", b"42", qos=1, retain=True)
        w = await connect(router)
        await w.publish("rx.from_wamp", "w", options=PublishOptions(retain=True, acknowledge=True))
        got = []
        await w.subscribe(lambda *a: got.append(a), "rx.from_mqtt", options=SubscribeOptions(get_retained=True))
        await wait_for(lambda: got == [(42,)])
        late = mqtt_client(router)
        late.subscribe("rx/from_wamp", qos=1)
        msg = await get_async(late)
        assert (msg.payload, msg.retain) == (b'"w"', True)
        w.leave()

    run(main())


def test_one_permanent_id_both_sides(router):
    async def main():
        # The permanent ID is opt-in: this client asks for it on CONNECT.
        m = mqtt_client(router, properties=props(UserProperty=[("fox-id", "true")]))
        m.subscribe("pid/x", qos=1)
        w = await connect(router)
        pub = await w.publish("pid.x", 1, options=PublishOptions(acknowledge=True))
        msg = await get_async(m)
        assert dict(msg.properties.UserProperty)["fox-id"] == str(pub.id)
        ids = []
        await w.subscribe(lambda *a, details=None: ids.append(details.publication), "pid.y",
                          options=SubscribeOptions(details_arg="details"))
        m.subscribe("pid/y", qos=1)
        m.publish("pid/y", b"1", qos=1)
        await wait_for(lambda: ids)
        echo = await get_async(m)
        assert dict(echo.properties.UserProperty)["fox-id"] == str(ids[0])
        w.leave()

    run(main())


def test_mqtt_will_reaches_wamp(router):
    async def main():
        w = await connect(router)
        got = []
        await w.subscribe(lambda *a: got.append(a), "xwill.dev1")
        dying = Client(router, new_id(), 4)
        dying.connect(will={"topic": "xwill/dev1", "payload": b'"offline"', "qos": 1})
        dying.kill()
        await wait_for(lambda: got == [("offline",)])
        w.leave()

    run(main())


def test_mqtt_over_websocket_and_wamp_share_the_port(router):
    async def main():
        m = Client(router, new_id(), 4, transport="ws")
        m.connect()
        m.subscribe("wsport/x", qos=1)
        w = await connect(router)
        await w.publish("wsport.x", "via ws", options=PublishOptions(acknowledge=True))
        assert (await get_async(m)).payload == b'"via ws"'
        w.leave()

    run(main())


def test_mqtt_hash_does_not_see_wamp_meta_events(router):
    """`#` matches neither `$` topics nor the router's `wamp.*` meta events (a WAMP session
    joining publishes wamp.session.on_join); a literal `wamp/...` subscription does."""
    import time

    import paho.mqtt.client as mqtt

    from wamp_client import connect, run

    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hash-watcher")
    c.on_message = lambda _c, _u, m: got.append(m.topic)
    host, port = router.mqtt
    c.connect(host, port)
    c.subscribe([("#", 0), ("wamp/session/on_join", 0)])
    c.loop_start()
    time.sleep(0.3)

    async def join_and_publish():
        s = await connect(router)
        s.publish("plain.topic", 1)
        import asyncio
        await asyncio.sleep(0.3)

    run(join_and_publish())
    deadline = time.monotonic() + 3
    while "plain/topic" not in got and time.monotonic() < deadline:
        time.sleep(0.05)
    c.loop_stop()
    assert "plain/topic" in got
    assert got.count("wamp/session/on_join") == 1, got
    assert all(t in ("plain/topic", "wamp/session/on_join") for t in got), got


def test_expired_mqtt5_retained_message_is_not_replayed_to_wamp(router):
    """An MQTT 5 retained message with a message expiry interval is not replayed by WAMP
    get_retained once it expired (one retained store, one rule)."""
    import time

    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from autobahn.wamp.types import SubscribeOptions

    from wamp_client import connect, run

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="expiring", protocol=mqtt.MQTTv5)
    host, port = router.mqtt
    c.connect(host, port)
    c.loop_start()
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 1
    c.publish("exp/short", "soon gone", qos=1, retain=True, properties=props).wait_for_publish(5)
    c.publish("exp/long", "stays", qos=1, retain=True).wait_for_publish(5)
    c.loop_stop()
    time.sleep(1.6)

    async def replay():
        s = await connect(router)
        got = []
        await s.subscribe(lambda *a, details=None: got.append(details.topic), "exp.",
                          options=SubscribeOptions(match="prefix", get_retained=True, details=True))
        import asyncio
        await asyncio.sleep(0.3)
        return got

    assert run(replay()) == ["exp.long"]


def test_a_text_starting_with_nul_reaches_json_peers_as_binary(router):
    """WAMP JSON reads a string that starts with NUL as binary ("\\0" + base64). A MsgPack
    publisher's text "\\0AQ", or one inside an MQTT JSON payload, has no JSON spelling: JSON
    subscribers get its UTF-8 bytes as binary instead of a message they cannot decode (the
    bridge_json fuzz target found it). A MsgPack subscriber gets the text itself."""

    async def main():
        reader = await connect(router)
        msgpack_reader = await connect(router, serializer="msgpack")
        got, got_msgpack = [], []
        await reader.subscribe(lambda *a: got.append(a), "nul.text")
        await msgpack_reader.subscribe(lambda *a: got_msgpack.append(a), "nul.text")
        writer = await connect(router, serializer="msgpack")
        await writer.publish("nul.text", "\x00AQ", options=PublishOptions(acknowledge=True))
        m = mqtt_client(router)
        m.publish("nul/text", b'["\\u0000AQ", "\\u0000AQID"]', qos=1)
        await wait_for(lambda: len(got) == 2 and len(got_msgpack) == 2)
        assert got[0] == (b"\x00AQ",)
        # An MQTT JSON payload is one argument; "\0AQID" is valid base64: binary [1, 2, 3].
        assert got[1] == ([b"\x00AQ", b"\x01\x02\x03"],)
        assert got_msgpack[0] == ("\x00AQ",)
        # Both sessions are still joined and served.
        await writer.publish("nul.text", "after", options=PublishOptions(acknowledge=True))
        await wait_for(lambda: len(got) == 3)
        for session in (reader, msgpack_reader, writer):
            session.leave()

    run(main())


def test_a_wamp_topic_with_an_mqtt_wildcard_is_not_sent_to_mqtt_clients(router):
    """A WAMP URI may hold `+` (`plus.a+b`), an MQTT topic name may not (MQTT-3.3.2-2): a
    `#` subscriber gets the other events, not a PUBLISH it would take for a protocol
    error, and stays connected."""

    async def main():
        m = mqtt_client(router)
        m.subscribe("plus/#", qos=1)
        w = await connect(router)
        ack = PublishOptions(acknowledge=True)
        await w.publish("plus.a+b", 1, options=ack)
        await w.publish("plus.ok", 2, options=ack)
        message = await get_async(m)
        assert (message.topic, message.payload) == ("plus/ok", b"2")
        m.expect_none(0.3)
        await w.publish("plus.again", 3, options=ack)
        assert (await get_async(m)).topic == "plus/again"
        w.leave()

    run(main())
