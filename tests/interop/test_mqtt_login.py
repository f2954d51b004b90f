"""MQTT CONNECT usernames (issue 12), as Mosquitto's `allow_anonymous` treats them: on a
router that allows anonymous sessions, a username that names no configured user, sent
without a password, logs in anonymously as that authid, in the realm its `@realm` suffix
names. A configured user with a wrong or missing password is refused, an unknown user with
a password too, and with anonymous sessions off every unknown user is refused.

Refusals: 3.1.1 CONNACK 0x04 (bad user name or password) / 0x05 (not authorized), 5.0
0x86 / 0x87. Checked on the wire with a raw client (paho 2.x reports 3.1.1 return codes as
5.0 reason codes) and with paho-mqtt and mosquitto_pub (`-u` without `-P`)."""

import struct
import subprocess

import pytest

from mqtt_client import Client, Raw, new_id, packet, s

USERS = """
[[role]]
name = "device"
permissions = [ { uri = "", match = "prefix", publish = true, subscribe = true } ]

[[user]]
authid = "joe"
secret = "pw"
role = "device"
"""

ANONYMOUS_OFF = "[auth]\nanonymous = false\n" + USERS


def rc_value(rc):
    return int(getattr(rc, "value", rc))


def connect_with(username=None, password=None, version=4):
    """A CONNECT (clean session) with optional username and password."""
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = s("MQTT") + bytes([version, flags]) + struct.pack("!H", 60)
    if version == 5:
        body += b"\x00"
    payload = s(new_id())
    if username is not None:
        payload += s(username)
    if password is not None:
        payload += s(password)
    return packet(0x10, body + payload)


def wire_connack(router, version, username=None, password=None):
    """The CONNACK return code (3.1.1) or reason code (5.0) as sent on the wire."""
    raw = Raw(router)
    try:
        raw.send(connect_with(username, password, version))
        _, _, body = raw.expect(2)
        return body[1]
    finally:
        raw.close()


def mosquitto_pub(router, username, password=None, version="mqttv311", topic="login/x", message="m"):
    host, port = router.mqtt
    cmd = ["mosquitto_pub", "-h", host, "-p", str(port), "-t", topic, "-m", message, "-q", "1",
           "-V", version, "-u", username]
    if password is not None:
        cmd += ["-P", password]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10)


@pytest.mark.parametrize("version", [4, 5])
def test_unknown_username_without_password_is_anonymous_on_the_default_router(router, version):
    """`fox@realm2` picks realm2 on a router with the embedded defaults (anonymous, no
    users); the client connects, and its messages stay in realm2."""
    assert wire_connack(router, version, "fox@realm2") == 0
    listener = Client(router, new_id(), version)
    _, rc, _ = listener.connect(username="fox@realm2")
    assert rc_value(rc) == 0, f"CONNACK {rc}; router log:\n{router.logs()}"
    listener.subscribe("login/x", qos=1)
    in_realm1 = Client(router, new_id(), version)
    assert rc_value(in_realm1.connect(username="device-7")[1]) == 0
    in_realm1.publish("login/x", b"realm1", qos=1)
    listener.expect_none()
    same_realm = Client(router, new_id(), version)
    assert rc_value(same_realm.connect(username="other@realm2")[1]) == 0
    same_realm.publish("login/x", b"realm2", qos=1)
    assert listener.get().payload == b"realm2"
    done = mosquitto_pub(router, "fox@realm2", version="mqttv5" if version == 5 else "mqttv311",
                         message="from mosquitto_pub")
    assert done.returncode == 0, done.stderr
    assert listener.get().payload == b"from mosquitto_pub"
    for c in (listener, in_realm1, same_realm):
        c.disconnect()


def test_anonymous_username_is_the_sessions_authid(router):
    """The username (without its realm) is the anonymous session's authid, as WAMP's
    session meta API shows it."""
    import asyncio

    from wamp_client import connect, run

    c = Client(router, "dev-client", 5)
    assert rc_value(c.connect(username="fox@realm1")[1]) == 0

    async def main():
        session = await connect(router)
        ids = await session.call("wamp.session.list")
        authids = [(await session.call("wamp.session.get", i))["authid"] for i in ids]
        assert "fox" in authids, authids
        session.leave()
        await asyncio.sleep(0)

    run(main())
    c.disconnect()


@pytest.mark.parametrize("version,bad_credentials", [(4, 0x04), (5, 0x86)])
def test_configured_user_still_needs_its_password(router_factory, version, bad_credentials):
    router = router_factory(USERS)
    assert wire_connack(router, version, "joe", "pw") == 0
    assert wire_connack(router, version, "joe", "wrong") == bad_credentials
    assert wire_connack(router, version, "joe") == bad_credentials, "no password"
    assert wire_connack(router, version, "joe@realm2") == bad_credentials, "no password, other realm"
    assert wire_connack(router, version, "stranger", "pw") == bad_credentials, "unknown user with a password"
    assert wire_connack(router, version, "stranger") == 0, "unknown user, no password: anonymous"
    paho = Client(router, new_id(), version)
    assert rc_value(paho.connect(username="joe")[1]) in (bad_credentials, 0x86)
    name = "mqttv5" if version == 5 else "mqttv311"
    refused = mosquitto_pub(router, "joe", version=name)
    assert refused.returncode != 0, "mosquitto_pub -u joe (no -P) must be refused"
    assert mosquitto_pub(router, "joe", "pw", version=name).returncode == 0
    assert mosquitto_pub(router, "stranger", version=name).returncode == 0


@pytest.mark.parametrize("version,bad_credentials,not_authorized", [(4, 0x04, 0x05), (5, 0x86, 0x87)])
def test_anonymous_off_refuses_every_unknown_user(router_factory, version, bad_credentials, not_authorized):
    router = router_factory(ANONYMOUS_OFF)
    assert wire_connack(router, version, "stranger") == bad_credentials
    assert wire_connack(router, version, "stranger@realm1") == bad_credentials
    assert wire_connack(router, version, "joe") == bad_credentials
    assert wire_connack(router, version) == not_authorized, "no username"
    assert wire_connack(router, version, "joe", "pw") == 0
    name = "mqttv5" if version == 5 else "mqttv311"
    assert mosquitto_pub(router, "stranger", version=name).returncode != 0
    paho = Client(router, new_id(), version)
    assert rc_value(paho.connect(username="stranger")[1]) in (bad_credentials, 0x86)
