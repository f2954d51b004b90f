"""Deny rules (issue 12): allow everything, deny one subtree, as operators of Mosquitto and
EMQX write their ACLs. Checked in both protocols with paho-mqtt, mosquitto tools, a raw MQTT
client and autobahn:

- a subscription to exactly a denied topic is refused (MQTT SUBACK 0x87 in 5.0, 0x80 in
  3.1.1, as the paho interoperability suite's `test/nosubscribe` case expects; WAMP ERROR
  wamp.error.not_authorized);
- a wildcard or shared subscription that also covers it is granted, and the denied topic's
  messages are filtered out of its deliveries and its retained replay;
- publishing to a denied topic: MQTT 5 PUBACK 0x87, 3.1.1 acknowledged and dropped (as the
  3.1.1 spec and Mosquitto do); WAMP ERROR wamp.error.not_authorized;
- call and register on a denied procedure are refused, and a pattern registration is not
  invoked for a procedure its callee may not register.
"""

import subprocess

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, RegisterOptions, SubscribeOptions

from mqtt_client import Client, Raw, connect_packet, new_id, publish_packet
from wamp_client import assert_stays, connect, run, wait_until

CONFIG = """
[[role]]
name = "anonymous"
permissions = [ { uri = "", match = "prefix", publish = true, subscribe = true, call = true, register = true } ]
deny = [
  { uri = "test.nosubscribe", subscribe = true },
  { uri = "secret.", match = "prefix", publish = true, subscribe = true, call = true, register = true },
  { uri = "svc.admin.", match = "prefix", register = true },
]

[[role]]
name = "admin"
permissions = [ { uri = "", match = "prefix", publish = true, subscribe = true, call = true, register = true } ]

[[user]]
authid = "admin"
secret = "pw"
role = "admin"
"""


def rc_value(rc):
    return int(getattr(rc, "value", rc))


@pytest.fixture
def router(router_factory):
    return router_factory(CONFIG)


@pytest.mark.parametrize("version,refused", [(4, 0x80), (5, 0x87)])
def test_paho_nosubscribe_case_is_refused(router, version, refused):
    """The paho interoperability suite's subscribe-failure case: SUBSCRIBE to
    test/nosubscribe with QoS 2 is answered with a failure code."""
    c = Client(router, new_id(), version)
    assert rc_value(c.connect()[1]) == 0
    assert [rc_value(r) for r in c.subscribe("test/nosubscribe", qos=2)] == [refused]
    assert [rc_value(r) for r in c.subscribe("$share/g/test/nosubscribe", qos=1)] == [refused]
    assert [rc_value(r) for r in c.subscribe("secret/#", qos=1)] == [refused], "inside a denied subtree"
    assert [rc_value(r) for r in c.subscribe("test/allowed", qos=2)] == [2]
    c.disconnect()


def test_v5_refusal_can_be_unspecified_error_for_strict_clients(router_factory):
    """limits.mqtt_v5_subscribe_refused_unspecified: MQTT 5 gets 0x80 (the code the paho
    testing client library accepts) instead of 0x87."""
    router = router_factory(CONFIG + "\n[limits]\nmqtt_v5_subscribe_refused_unspecified = true\n")
    c = Client(router, new_id(), 5)
    assert rc_value(c.connect()[1]) == 0
    assert [rc_value(r) for r in c.subscribe("test/nosubscribe", qos=2)] == [0x80]
    assert [rc_value(r) for r in c.subscribe("test/allowed", qos=2)] == [2]
    c.disconnect()


@pytest.mark.parametrize("version", [4, 5])
def test_wildcard_subscriptions_are_granted_and_filtered(router, version):
    publisher = Client(router, new_id(), 5)
    publisher.connect()
    publisher.publish("test/nosubscribe", b"retained hidden", qos=1, retain=True)
    publisher.publish("test/other", b"retained visible", qos=1, retain=True)
    subscriber = Client(router, new_id(), version)
    subscriber.connect()
    assert [rc_value(r) for r in subscriber.subscribe("test/+", qos=1)] == [1]
    retained = subscriber.get()
    assert (retained.topic, retained.payload) == ("test/other", b"retained visible")
    subscriber.expect_none(0.3)
    shared = Client(router, new_id(), version)
    shared.connect()
    assert [rc_value(r) for r in shared.subscribe("$share/g/#", qos=1)] == [1]
    everything = Client(router, new_id(), version)
    everything.connect()
    assert [rc_value(r) for r in everything.subscribe("#", qos=1)] == [1]
    retained = everything.get()
    assert (retained.topic, retained.payload) == ("test/other", b"retained visible")
    publisher.publish("test/nosubscribe", b"hidden", qos=1)
    publisher.publish("test/other", b"visible", qos=1)
    for c in (subscriber, shared, everything):
        m = c.get()
        assert (m.topic, m.payload) == ("test/other", b"visible"), f"{m.topic}: {m.payload!r}"
        c.expect_none(0.2)
    # mosquitto_sub on `test/#`: the retained replay (in topic order, test/nosubscribe
    # first) starts with the allowed topic.
    host, port = router.mqtt
    out = subprocess.run(["mosquitto_sub", "-h", host, "-p", str(port), "-t", "test/#", "-v", "-C", "1",
                          "-W", "5", "-q", "1"], capture_output=True, text=True, timeout=15).stdout
    assert out.strip() == "test/other retained visible", out


def test_publish_to_a_denied_topic(router):
    """5.0: PUBACK 0x87. 3.1.1: acknowledged and dropped."""
    admin = Client(router, new_id(), 5)
    assert rc_value(admin.connect(username="admin", password="pw")[1]) == 0
    assert [rc_value(r) for r in admin.subscribe("secret/#", qos=1)] == [1]
    assert [rc_value(r) for r in admin.subscribe("open/#", qos=1)] == [1]
    raw = Raw(router)
    raw.send(connect_packet(new_id(), version=5))
    raw.expect(2)
    raw.send(publish_packet("secret/x", b"v5", qos=1, packet_id=5, version=5))
    _, _, body = raw.expect(4)
    assert body[:2] == b"\x00\x05" and body[2] == 0x87, body.hex()
    raw.close()
    old = Raw(router)
    old.send(connect_packet(new_id(), version=4))
    old.expect(2)
    old.send(publish_packet("secret/x", b"v3", qos=1, packet_id=6, version=4))
    _, _, body = old.expect(4)
    assert body == b"\x00\x06", body.hex()
    old.send(publish_packet("open/x", b"barrier", qos=1, packet_id=7, version=4))
    old.expect(4)
    m = admin.get()
    assert (m.topic, m.payload) == ("open/x", b"barrier"), "the denied publishes were dropped"
    old.close()
    done = subprocess.run(["mosquitto_pub", "-h", router.mqtt[0], "-p", str(router.mqtt[1]), "-t", "secret/y",
                           "-m", "m", "-q", "1", "-V", "mqttv5"], capture_output=True, text=True, timeout=10)
    assert done.returncode != 0 or "not authorized" in (done.stderr + done.stdout).lower(), done
    admin.expect_none(0.3)


def test_wamp_publish_subscribe_call_register_refused(router):
    async def main():
        s = await connect(router)
        for what, action in (
            ("subscribe test.nosubscribe", s.subscribe(lambda *a: None, "test.nosubscribe")),
            ("subscribe secret.x", s.subscribe(lambda *a: None, "secret.x")),
            ("publish secret.x", s.publish("secret.x", 1, options=PublishOptions(acknowledge=True))),
            ("call secret.proc", s.call("secret.proc")),
            ("register secret.proc", s.register(lambda: 1, "secret.proc")),
            ("register svc.admin.reset", s.register(lambda: 1, "svc.admin.reset")),
        ):
            try:
                await action
                raise AssertionError(f"{what} was allowed")
            except ApplicationError as e:
                assert e.error == "wamp.error.not_authorized", f"{what}: {e.error}"
        # Allowed neighbours still work.
        await s.publish("test.nosubscribe", 1, options=PublishOptions(acknowledge=True))
        await s.subscribe(lambda *a: None, "test.allowed")

    run(main())


def test_wamp_pattern_subscription_and_registration_are_filtered(router):
    async def main():
        subscriber, publisher, callee, caller = [await connect(router) for _ in range(4)]
        got = []
        await subscriber.subscribe(lambda *a, **k: got.append(k["details"].topic), "test",
                                   options=SubscribeOptions(match="prefix", details_arg="details"))
        await publisher.publish("test.nosubscribe", 1, options=PublishOptions(acknowledge=True))
        await publisher.publish("test.other", 2, options=PublishOptions(acknowledge=True))
        await wait_until(lambda: got, what="the allowed event")
        await assert_stays(lambda: got == ["test.other"], 0.3, "the denied topic's event is filtered")

        await callee.register(lambda *a, **k: k["details"].procedure, "svc.",
                              options=RegisterOptions(match="prefix", details_arg="details"))
        assert await caller.call("svc.status") == "svc.status"
        try:
            await caller.call("svc.admin.reset")
            raise AssertionError("a pattern registration was invoked for a procedure its callee may not register")
        except ApplicationError as e:
            assert e.error == "wamp.error.no_such_procedure", e.error

    run(main())
