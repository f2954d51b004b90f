"""JWT authentication ([auth.jwt], docs/auth.md): a WAMP ticket (autobahn-python) or an MQTT
password (paho-mqtt, and a raw client for the exact CONNACK codes) that is a JWT signed with
the configured key logs in as the token's `sub` with its `role`, whose permissions then
apply; expired, not-yet-valid, wrong-audience, badly signed and wrongly-algorithmed tokens
are refused like a wrong password, and the log names the reason but never the token.

Keys are made by each test at run time (PyJWT, cryptography); none is committed."""

import secrets
import struct
import time

import jwt
import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mqtt_client import Client, Raw, new_id, packet, s
from wamp_client import JoinFailed, connect, run

ACK = PublishOptions(acknowledge=True)
AUDIENCE = "foxrouter-tests"

ROLES = """
[router]
auto_create_realms = false
realms = ["realm1", "realm2"]

[auth]
anonymous = false

[[role]]
name = "backend"
permissions = [
  { uri = "com.allowed.", match = "prefix", publish = true, subscribe = true, call = true, register = true },
]

[[role]]
name = "reader"
permissions = [ { uri = "com.allowed.", match = "prefix", subscribe = true } ]

[[user]]
authid = "joe"
secret = "s3cret"
role = "backend"
"""


def claims(**overrides):
    now = int(time.time())
    base = {"sub": "alice", "role": "backend", "aud": AUDIENCE, "iat": now, "exp": now + 600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
def hs_router(router_factory):
    secret = secrets.token_hex(32)
    config = ROLES + f"""
[auth.jwt]
algorithm = "HS256"
secret = "{secret}"
audience = "{AUDIENCE}"
realms = ["realm1"]
"""
    router = router_factory(config)
    router.sign = lambda payload, key=secret, algorithm="HS256": jwt.encode(payload, key, algorithm)
    return router


async def join_fails(router, **kwargs):
    with pytest.raises(JoinFailed) as raised:
        await connect(router, authmethods=["ticket"], **kwargs)
    return raised.value.reason


def connect_packet(username, password, version, client_id=None):
    flags = 0x02 | 0x80 | 0x40
    body = s("MQTT") + bytes([version, flags]) + struct.pack("!H", 60)
    if version == 5:
        body += b"\x00"
    return packet(0x10, body + s(client_id or new_id()) + s(username) + s(password))


def connack_code(router, username, password, version=4):
    """The CONNACK return code (3.1.1) or reason code (5.0) as sent on the wire."""
    raw = Raw(router)
    try:
        raw.send(connect_packet(username, password, version))
        _, _, body = raw.expect(2)
        return body[1]
    finally:
        raw.close()


@pytest.mark.parametrize("transport,serializer", [("websocket", "json"), ("rawsocket", "msgpack")])
def test_valid_token_logs_in_with_its_claims_and_role(hs_router, transport, serializer):
    async def main():
        token = hs_router.sign(claims())
        s = await connect(hs_router, authmethods=["ticket"], secret=token, transport=transport,
                          serializer=serializer)
        assert (s.details.authid, s.details.authrole, s.details.authmethod) == \
            ("alice", "backend", "ticket")
        assert s.details.authprovider == "jwt"
        await s.publish("com.allowed.news", 1, options=ACK)
        # The offered authid does not matter: the claim gives it.
        reader = await connect(hs_router, authmethods=["ticket"], authid="someone-else",
                               secret=hs_router.sign(claims(sub="bob", role="reader")),
                               transport=transport, serializer=serializer)
        assert (reader.details.authid, reader.details.authrole) == ("bob", "reader")
        with pytest.raises(ApplicationError) as refused:
            await reader.publish("com.allowed.news", 1, options=ACK)
        assert refused.value.error == "wamp.error.not_authorized"
        await reader.subscribe(lambda *a: None, "com.allowed.news")
        s.leave()
        reader.leave()

    run(main())


def test_refused_tokens_and_the_log(hs_router):
    now = int(time.time())
    other_secret = secrets.token_hex(32)
    cases = {
        "token expired": hs_router.sign(claims(exp=now - 3600)),
        "token not yet valid": hs_router.sign(claims(nbf=now + 3600)),
        "wrong token audience": hs_router.sign(claims(aud="someone-else")),
        "bad token signature": hs_router.sign(claims(), key=other_secret),
        "wrong token algorithm": hs_router.sign(claims(), algorithm="HS384"),
        "token claim 'role' missing": hs_router.sign(claims(role=None)),
        "token claim 'exp' missing": hs_router.sign(claims(exp=None)),
    }
    cases["malformed token (alg none)"] = jwt.encode(claims(), None, algorithm="none")

    async def main():
        for reason, token in cases.items():
            assert await join_fails(hs_router, secret=token) == "wamp.error.not_authorized", reason

    run(main())
    log = hs_router.log_path.read_text()
    for reason, token in cases.items():
        assert reason.split(" (")[0] in log, f"{reason} not logged: {log}"
        assert token not in log, "a token was logged"


def test_static_users_and_other_realms_are_unchanged(hs_router):
    async def main():
        s = await connect(hs_router, authmethods=["ticket"], authid="joe", secret="s3cret")
        assert (s.details.authrole, s.details.authprovider) == ("backend", "static")
        assert await join_fails(hs_router, authid="joe", secret="wrong") == \
            "wamp.error.not_authorized"
        # realm2 is not in [auth.jwt] realms: a token is just an unknown authid's ticket.
        assert await join_fails(hs_router, realm="realm2", secret=hs_router.sign(claims())) == \
            "wamp.error.not_authorized"
        # An unknown authid with a ticket that is no JWT: refused as before.
        assert await join_fails(hs_router, authid="nobody", secret="s3cret") == \
            "wamp.error.not_authorized"
        s.leave()

    run(main())


@pytest.mark.parametrize("version,refused", [(4, 0x04), (5, 0x86)])
def test_mqtt_password_token(hs_router, version, refused):
    now = int(time.time())
    assert connack_code(hs_router, "any", hs_router.sign(claims()), version) == 0
    assert connack_code(hs_router, "any", hs_router.sign(claims(exp=now - 3600)), version) == refused
    assert connack_code(hs_router, "any", hs_router.sign(claims(aud="x")), version) == refused
    assert connack_code(hs_router, "any", hs_router.sign(claims(), key=secrets.token_hex(32)), version) == refused
    # The `@realm` suffix still picks the realm; realm2 does not take tokens.
    assert connack_code(hs_router, "any@realm2", hs_router.sign(claims()), version) == refused


def test_mqtt_token_role_permissions_apply(hs_router):
    """paho-mqtt with a token as password: the token's role decides what it may do."""
    backend = Client(hs_router, version=5)
    _, rc, _ = backend.connect(username="device", password=hs_router.sign(claims(sub="dev-1")))
    assert rc == 0
    reader = Client(hs_router, version=5)
    _, rc, _ = reader.connect(username="device", password=hs_router.sign(claims(role="reader")))
    assert rc == 0
    try:
        assert [int(r.value) for r in reader.subscribe("com/allowed/t", qos=1)] == [1]
        assert [int(r.value) for r in backend.subscribe("com/secret/t", qos=1)] == [0x87]
        backend.publish("com/allowed/t", b"hello", qos=1)
        assert reader.get().payload == b"hello"
        # The reader may not publish: its message is not delivered.
        reader.publish("com/allowed/t", b"forbidden", qos=0)
        reader.expect_none(0.5)
    finally:
        backend.disconnect()
        reader.disconnect()


def pem_public(private_key):
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def pem_private(private_key):
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


@pytest.mark.parametrize("algorithm", ["RS256", "EdDSA"])
def test_public_key_algorithms(router_factory, tmp_path, algorithm):
    def generate():
        if algorithm == "RS256":
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return ed25519.Ed25519PrivateKey.generate()

    key, stranger = generate(), generate()
    public_file = tmp_path / "jwt-public.pem"
    public_file.write_bytes(pem_public(key))
    router = router_factory(ROLES + f"""
[auth.jwt]
algorithm = "{algorithm}"
public_key_file = "{public_file}"
audience = "{AUDIENCE}"
issuer = "https://login.example"
""")
    good = jwt.encode(claims(iss="https://login.example"), pem_private(key), algorithm=algorithm)
    foreign = jwt.encode(claims(iss="https://login.example"), pem_private(stranger),
                         algorithm=algorithm)
    no_issuer = jwt.encode(claims(), pem_private(key), algorithm=algorithm)
    hs = jwt.encode(claims(iss="https://login.example"), "a-secret-of-thirty-two-bytes-min",
                    algorithm="HS256")

    async def main():
        s = await connect(router, authmethods=["ticket"], secret=good)
        assert (s.details.authid, s.details.authrole) == ("alice", "backend")
        for token in (foreign, no_issuer, hs):
            assert await join_fails(router, secret=token) == "wamp.error.not_authorized"
        s.leave()

    run(main())
    assert connack_code(router, "u", good) == 0
    assert connack_code(router, "u", foreign) == 0x04
    log = router.logs()
    assert "bad token signature" in log and "wrong token algorithm" in log, log


def test_a_bad_key_file_is_refused_at_start(router_factory, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(RuntimeError) as failed:
        router_factory(ROLES + f'[auth.jwt]\nalgorithm = "RS256"\npublic_key_file = "{bad}"\n')
    assert "public_key_file" in str(failed.value)
