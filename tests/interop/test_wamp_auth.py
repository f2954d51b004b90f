"""Authentication (anonymous, ticket, WAMP-CRA plain and salted, WAMP-Cryptosign, realm
restriction, realm existence) and role permissions, through autobahn-python."""

import pytest
from autobahn.wamp.cryptosign import CryptosignKey
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions

from wamp_client import JoinFailed, assert_stays, connect, run, wait_until

ACK = PublishOptions(acknowledge=True)

CONFIG = """
[router]
auto_create_realms = false
realms = ["realm1", "realm2"]

[auth]
anonymous = false

[[role]]
name = "backend"
permissions = [
  { uri = "com.allowed.", match = "prefix", publish = true, subscribe = true, call = true, register = true },
  { uri = "com.allowed.readonly", subscribe = true },
  { uri = "wamp.session.", match = "prefix", call = true },
]

[[role]]
name = "frontend"
permissions = [ { uri = "com.allowed.", match = "prefix", subscribe = true, call = true } ]

[[user]]
authid = "joe"
secret = "s3cret"
role = "backend"

[[user]]
authid = "salty"
secret = "pepper"
salt = "salt123"
iterations = 100
keylen = 32
role = "backend"

[[user]]
authid = "restricted"
secret = "pw"
role = "frontend"
realms = ["realm2"]

[[user]]
authid = "signer"
pubkeys = ["%s"]
role = "backend"
""" % CryptosignKey.from_bytes(bytes(range(32))).public_key()


@pytest.fixture
def auth_router(router_factory):
    return router_factory(CONFIG)


async def join_fails(router, **kwargs):
    with pytest.raises(JoinFailed) as raised:
        await connect(router, **kwargs)
    return raised.value.reason


@pytest.mark.parametrize("transport,serializer", [("websocket", "json"), ("rawsocket", "msgpack")])
def test_ticket(auth_router, transport, serializer):
    async def main():
        s = await connect(auth_router, authmethods=["ticket"], authid="joe", secret="s3cret",
                          transport=transport, serializer=serializer)
        assert s.details.authid == "joe"
        assert s.details.authrole == "backend"
        assert s.details.authmethod == "ticket"
        assert await join_fails(auth_router, authmethods=["ticket"], authid="joe", secret="wrong",
                                transport=transport, serializer=serializer) == "wamp.error.not_authorized"
        assert await join_fails(auth_router, authmethods=["ticket"], authid="nobody", secret="s3cret") \
            == "wamp.error.not_authorized"

    run(main())


def test_wampcra(auth_router):
    async def main():
        s = await connect(auth_router, authmethods=["wampcra"], authid="joe", secret="s3cret")
        assert s.details.authid == "joe"
        assert s.details.authrole == "backend"
        assert s.details.authmethod == "wampcra"
        assert await join_fails(auth_router, authmethods=["wampcra"], authid="joe", secret="s3cre") \
            == "wamp.error.not_authorized"

    run(main())


def test_wampcra_salted(auth_router):
    async def main():
        s = await connect(auth_router, authmethods=["wampcra"], authid="salty", secret="pepper",
                          transport="rawsocket", serializer="cbor")
        assert s.details.authid == "salty"
        assert s.details.authmethod == "wampcra"
        assert await join_fails(auth_router, authmethods=["wampcra"], authid="salty", secret="salt") \
            == "wamp.error.not_authorized"

    run(main())


def test_session_details_visible_in_meta(auth_router):
    async def main():
        s = await connect(auth_router, authmethods=["ticket"], authid="joe", secret="s3cret")
        details = await s.call("wamp.session.get", s.session_id)
        assert (details["authid"], details["authrole"], details["authmethod"]) == ("joe", "backend", "ticket")
        # the meta API is subject to permissions too: frontend has no rule for wamp.
        f = await connect(auth_router, realm="realm2", authmethods=["ticket"], authid="restricted", secret="pw")
        with pytest.raises(ApplicationError) as raised:
            await f.call("wamp.session.count")
        assert raised.value.error == "wamp.error.not_authorized"

    run(main())


def test_realm_restriction(auth_router):
    async def main():
        assert await join_fails(auth_router, realm="realm1", authmethods=["ticket"], authid="restricted",
                                secret="pw") == "wamp.error.not_authorized"
        s = await connect(auth_router, realm="realm2", authmethods=["ticket"], authid="restricted", secret="pw")
        assert s.details.realm == "realm2"
        assert s.details.authrole == "frontend"

    run(main())


def test_no_usable_auth_method(auth_router):
    async def main():
        assert await join_fails(auth_router) == "wamp.error.no_auth_method"
        assert await join_fails(auth_router, authmethods=["anonymous"]) == "wamp.error.no_auth_method"
        assert await join_fails(auth_router, authmethods=["cryptosign", "scram"], authid="joe") \
            == "wamp.error.no_auth_method"

    run(main())


def test_unknown_realm_without_auto_create(auth_router):
    async def main():
        assert await join_fails(auth_router, realm="realm3", authmethods=["ticket"], authid="joe",
                                secret="s3cret") == "wamp.error.no_such_realm"

    run(main())


def test_anonymous_default_and_auto_created_realm(router):
    async def main():
        s = await connect(router, realm="brand.new.realm")
        assert s.details.authmethod == "anonymous"
        assert s.details.authrole == "anonymous"
        assert s.details.realm == "brand.new.realm"
        assert 1 <= s.session_id <= 2**53

    run(main())


def test_welcome_announces_features(router):
    async def main():
        s = await connect(router)
        roles = s._router_roles  # WELCOME.Details.roles as autobahn parsed them
        broker_features = roles["broker"].__dict__
        dealer_features = roles["dealer"].__dict__
        for feature in ("pattern_based_subscription", "publisher_identification", "publisher_exclusion",
                        "subscriber_blackwhite_listing", "session_meta_api", "subscription_meta_api"):
            assert broker_features.get(feature) is True, f"broker feature {feature} not announced"
        for feature in ("pattern_based_registration", "shared_registration", "progressive_call_results",
                        "call_canceling", "call_timeout", "caller_identification", "session_meta_api",
                        "registration_meta_api", "testament_meta_api"):
            assert dealer_features.get(feature) is True, f"dealer feature {feature} not announced"

    run(main())


def test_role_permissions(auth_router):
    async def main():
        backend = await connect(auth_router, authmethods=["ticket"], authid="joe", secret="s3cret")
        frontend = await connect(auth_router, realm="realm2", authmethods=["ticket"], authid="restricted",
                                 secret="pw")
        backend2 = await connect(auth_router, realm="realm2", authmethods=["wampcra"], authid="joe", secret="s3cret")

        async def denied(coro):
            with pytest.raises(ApplicationError) as raised:
                await coro
            return raised.value.error

        # allowed
        got = []
        await backend.subscribe(lambda *a: got.append(a), "com.allowed.topic")
        await backend.register(lambda: "ok", "com.allowed.proc")
        assert await backend.call("com.allowed.proc") == "ok"
        await backend.subscribe(lambda *a: None, "com.allowed.readonly")
        # denied: no matching rule
        assert await denied(backend.publish("com.other.topic", options=ACK)) == "wamp.error.not_authorized"
        assert await denied(backend.subscribe(lambda: None, "com.other.topic")) == "wamp.error.not_authorized"
        assert await denied(backend.register(lambda: None, "com.other.proc")) == "wamp.error.not_authorized"
        assert await denied(backend.call("com.other.proc")) == "wamp.error.not_authorized"
        # denied: the exact rule is more specific than the prefix rule
        assert await denied(backend.publish("com.allowed.readonly", options=ACK)) == "wamp.error.not_authorized"
        assert await denied(backend.register(lambda: None, "com.allowed.readonly")) == "wamp.error.not_authorized"
        assert await denied(backend.call("com.allowed.readonly")) == "wamp.error.not_authorized"
        # frontend on realm2: subscribe and call only
        await backend2.register(lambda: "r2", "com.allowed.proc2")
        assert await frontend.call("com.allowed.proc2") == "r2"
        await frontend.subscribe(lambda *a: None, "com.allowed.x")
        assert await denied(frontend.publish("com.allowed.x", options=ACK)) == "wamp.error.not_authorized"
        assert await denied(frontend.register(lambda: None, "com.allowed.y")) == "wamp.error.not_authorized"
        # a denied publish without acknowledge is dropped silently
        listener = []
        await backend2.subscribe(lambda *a: listener.append(a), "com.allowed.x")
        frontend.publish("com.allowed.x", "forbidden")
        await backend2.publish("com.allowed.sentinel", options=ACK)
        await assert_stays(lambda: not listener, 0.3, "denied publication not delivered")
        assert not frontend.left.done(), "a denied publish must not end the session"
        assert await frontend.call("com.allowed.proc2") == "r2"

    run(main())


def test_anonymous_role_permissions(router_factory):
    router = router_factory('[auth]\nanonymous = true\nanonymous_role = "guest"\n'
                            '[[role]]\nname = "guest"\npermissions = [ { uri = "com.public.", match = "prefix", subscribe = true } ]\n')

    async def main():
        s = await connect(router)
        assert s.details.authrole == "guest"
        assert s.details.authmethod == "anonymous"
        await s.subscribe(lambda *a: None, "com.public.news")
        with pytest.raises(ApplicationError) as raised:
            await s.publish("com.public.news", options=ACK)
        assert raised.value.error == "wamp.error.not_authorized"
        with pytest.raises(ApplicationError) as raised:
            await s.subscribe(lambda *a: None, "com.private.news")
        assert raised.value.error == "wamp.error.not_authorized"

    run(main())


def test_wampcra_challenge_by_hand(auth_router):
    """The CHALLENGE names the session the WELCOME then gives, and a signature computed by
    autobahn's helpers over the exact challenge string is accepted."""
    import json as _json

    from autobahn.wamp import auth as wamp_auth

    from wamp_client import RawSocketClient

    c = RawSocketClient(auth_router.rawsocket, "json")
    assert c.handshake()[0] == 0x7F
    c.send([1, "realm1", {"roles": {"caller": {}}, "authmethods": ["wampcra"], "authid": "salty"}])
    challenge = c.recv()
    assert challenge[:2] == [4, "wampcra"], challenge
    extra = challenge[2]
    assert (extra["salt"], extra["iterations"], extra["keylen"]) == ("salt123", 100, 32)
    fields = _json.loads(extra["challenge"])
    assert fields["authid"] == "salty" and fields["authrole"] == "backend" and fields["authmethod"] == "wampcra"
    key = wamp_auth.derive_key("pepper", extra["salt"], extra["iterations"], extra["keylen"])
    signature = wamp_auth.compute_wcs(key, extra["challenge"]).decode()
    c.send([5, signature, {}])
    welcome = c.recv()
    assert welcome[0] == 2, welcome
    assert welcome[1] == fields["session"]
    assert welcome[2]["authid"] == "salty" and welcome[2]["authrole"] == "backend"


@pytest.mark.parametrize("transport,serializer", [("websocket", "json"), ("rawsocket", "msgpack")])
def test_cryptosign(auth_router, transport, serializer):
    """WAMP-Cryptosign (Ed25519): by authid, or by public key alone; a wrong key, a user with
    no keys and a secret-only method for a key-only user are refused."""
    key = CryptosignKey.from_bytes(bytes(range(32)))
    other = CryptosignKey.from_bytes(bytes(32))

    async def main():
        s = await connect(auth_router, transport=transport, serializer=serializer, authid="signer",
                          authmethods=["cryptosign"], key=key, authextra={"pubkey": key.public_key()})
        assert (s.details.authid, s.details.authrole, s.details.authmethod) == ("signer", "backend", "cryptosign")
        await s.publish("com.allowed.x", 1, options=ACK)  # the role's permissions apply
        s.leave()
        by_key = await connect(auth_router, authmethods=["cryptosign"], key=key,
                               authextra={"pubkey": key.public_key()})
        assert by_key.details.authid == "signer"
        by_key.leave()
        # a key that is not the user's: refused at HELLO; one that signs wrongly: at AUTHENTICATE
        assert await join_fails(auth_router, authid="signer", authmethods=["cryptosign"], key=other,
                                authextra={"pubkey": other.public_key()}) == "wamp.error.not_authorized"
        assert await join_fails(auth_router, authid="signer", authmethods=["cryptosign"], key=other,
                                authextra={"pubkey": key.public_key()}) == "wamp.error.not_authorized"
        assert await join_fails(auth_router, authmethods=["cryptosign"], key=other,
                                authextra={"pubkey": other.public_key()}) == "wamp.error.not_authorized"
        # the key-only user has no ticket; joe has no key
        assert await join_fails(auth_router, authid="signer", authmethods=["ticket"],
                                secret="") == "wamp.error.no_auth_method"
        assert await join_fails(auth_router, authid="joe", authmethods=["cryptosign"], key=key,
                                authextra={"pubkey": key.public_key()}) == "wamp.error.no_auth_method"

    run(main())
