"""The external authenticators (docs/auth.md): the HTTP hook ([auth.http], as EMQX's) and
the dynamic authenticator ([auth.dynamic], as Crossbar.io's), for WAMP tickets
(autobahn-python) and MQTT passwords (raw CONNECT for the exact CONNACK codes).

The HTTP hook is a small http.server on 127.0.0.1:0 in the test that answers by the
credentials it receives and counts its calls (the cache shows in the count). The dynamic
authenticator is an autobahn session that registers the procedure on the realm `auth`."""

import asyncio
import json
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions

from mqtt_client import Raw, new_id, packet, s
from wamp_client import JoinFailed, connect, run

ACK = PublishOptions(acknowledge=True)

ROLES = """
[router]
realms = ["realm1", "auth"]

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


class Hook:
    """The HTTP hook: answers by the credentials, records every request."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.in_flight_max = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with hook.lock:
                    hook.requests.append(body)
                    hook.in_flight += 1
                    hook.in_flight_max = max(hook.in_flight_max, hook.in_flight)
                try:
                    status, answer = hook.answer(body)
                finally:
                    with hook.lock:
                        hook.in_flight -= 1
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        host, port = self.server.server_address
        return f"http://{host}:{port}/auth"

    def answer(self, body):
        credentials = body["credentials"]
        if credentials == "good":
            return 200, {"result": "allow", "role": "backend", "is_superuser": False}
        if credentials == "renamed":
            return 200, {"result": "allow", "role": "reader", "authid": "hooked"}
        if credentials.startswith("slow"):
            time.sleep(float(credentials[4:] or 2))
            return 200, {"result": "allow", "role": "backend"}
        if credentials == "status500":
            return 500, {"result": "allow", "role": "backend"}
        if credentials == "garbage":
            return 200, "this is not JSON"
        if credentials == "norole":
            return 200, {"result": "allow"}
        if credentials == "ignore":
            return 200, {"result": "ignore"}
        return 200, {"result": "deny"}

    def calls(self, credentials=None):
        with self.lock:
            return sum(1 for r in self.requests if credentials in (None, r["credentials"]))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def http_config(hook, **settings):
    lines = [f'url = "{hook.url}"'] + [f"{k} = {v}" for k, v in settings.items()]
    return ROLES + "\n[auth.http]\n" + "\n".join(lines) + "\n"


async def join_fails(router, **kwargs):
    with pytest.raises(JoinFailed) as raised:
        await connect(router, authmethods=["ticket"], **kwargs)
    return raised.value.reason


def connack_code(router, username, password, version=4, client_id=None):
    """The CONNACK return code (3.1.1) or reason code (5.0) as sent on the wire."""
    flags = 0x02 | (0x80 if username is not None else 0) | 0x40
    body = s("MQTT") + bytes([version, flags]) + struct.pack("!H", 60)
    if version == 5:
        body += b"\x00"
    payload = s(client_id or new_id()) + (s(username) if username is not None else b"") + s(password)
    raw = Raw(router)
    try:
        raw.send(packet(0x10, body + payload))
        _, _, connack = raw.expect(2)
        return connack[1]
    finally:
        raw.close()


# ---------------------------------------------------------------------------------------
# HTTP hook


def test_http_hook_allows_with_its_role_and_denies(router_factory, hook):
    router = router_factory(http_config(hook, timeout_ms=3000))

    async def main():
        s = await connect(router, authmethods=["ticket"], authid="ann", secret="good")
        assert (s.details.authid, s.details.authrole, s.details.authprovider) == \
            ("ann", "backend", "http")
        await s.publish("com.allowed.x", 1, options=ACK)
        r = await connect(router, authmethods=["ticket"], authid="ann", secret="renamed",
                          transport="rawsocket", serializer="msgpack")
        assert (r.details.authid, r.details.authrole) == ("hooked", "reader")
        with pytest.raises(ApplicationError):
            await r.publish("com.allowed.x", 1, options=ACK)
        for bad in ("wrong", "status500", "garbage", "norole", "ignore"):
            assert await join_fails(router, authid="ann", secret=bad) == \
                "wamp.error.not_authorized", bad
        # A configured user is still decided by its secret, without asking the hook.
        before = hook.calls()
        j = await connect(router, authmethods=["ticket"], authid="joe", secret="s3cret")
        assert j.details.authprovider == "static"
        assert hook.calls() == before
        s.leave()
        r.leave()
        j.leave()

    run(main())
    request = hook.requests[0]
    assert request["realm"] == "realm1" and request["authid"] == "ann"
    assert request["authmethod"] == "ticket" and request["protocol"] == "wamp"
    assert request["transport"] == "websocket" and request["peer"] == "127.0.0.1"
    log = router.log_path.read_text()
    for reason in ("HTTP hook: denied", "status 500", "bad JSON", "allow without a role"):
        assert reason in log, f"{reason!r} not logged"
    assert "garbage" not in log and "status500" not in log, "credentials were logged"


@pytest.mark.parametrize("version,bad,failed", [(4, 0x04, 0x05), (5, 0x86, 0x87)])
def test_http_hook_mqtt_passwords_and_timeout(router_factory, hook, version, bad, failed):
    router = router_factory(http_config(hook, timeout_ms=500))
    assert connack_code(router, "dev@realm1", "good", version) == 0
    assert connack_code(router, "dev", "wrong", version) == bad
    started = time.monotonic()
    assert connack_code(router, "dev", "slow2", version) == failed
    assert time.monotonic() - started < 1.8, "the timeout did not cut the wait short"
    # MQTT 5 allows a password without a username: the client id is then the authid.
    if version == 5:
        assert connack_code(router, None, "good", version) == 0
    request = next(r for r in hook.requests if r["credentials"] == "good")
    assert request["protocol"] == "mqtt" and request["authmethod"] == "password"
    assert request["authid"] == "dev" and request["client_id"].startswith("t-")
    assert "HTTP hook: timed out" in router.log_path.read_text()


def test_http_hook_cache(router_factory, hook):
    router = router_factory(http_config(hook, cache_ms=60000))

    async def main():
        for _ in range(3):
            s = await connect(router, authmethods=["ticket"], authid="ann", secret="good")
            s.leave()
        assert await join_fails(router, authid="ann", secret="wrong") == "wamp.error.not_authorized"
        assert await join_fails(router, authid="ann", secret="wrong") == "wamp.error.not_authorized"

    run(main())
    assert hook.calls("good") == 1, "allow answers are cached"
    assert hook.calls("wrong") == 1, "deny answers are cached"
    # Another input field (the MQTT client id) is another cache entry.
    assert connack_code(router, "ann", "good", client_id="c-1") == 0
    assert connack_code(router, "ann", "good", client_id="c-1") == 0
    assert connack_code(router, "ann", "good", client_id="c-2") == 0
    assert hook.calls("good") == 3


def test_http_hook_without_cache_asks_every_time(router_factory, hook):
    router = router_factory(http_config(hook))
    for _ in range(3):
        assert connack_code(router, "ann", "good", client_id="same") == 0
    assert hook.calls("good") == 3


def test_http_hook_concurrency_bound_waits_within_the_timeout(router_factory, hook):
    """concurrency_max = 1: a login that finds the slot taken waits for it, and the wait
    counts against the timeout."""
    router = router_factory(http_config(hook, timeout_ms=2000, concurrency_max=1))

    async def main():
        loop = asyncio.get_running_loop()
        first = loop.run_in_executor(None, connack_code, router, "a", "slow1.5")
        await asyncio.sleep(0.2)
        second = loop.run_in_executor(None, connack_code, router, "b", "slow1.5")
        return await first, await second

    first, second = run(main())
    assert first == 0, "the first login got the slot"
    assert second == 0x05, "the second waited for the slot, then ran out of time"
    assert hook.in_flight_max == 1, "the hook never saw two requests at once"


# ---------------------------------------------------------------------------------------
# Dynamic authenticator

DYNAMIC = ROLES + """
[auth.dynamic]
realm = "auth"
procedure = "com.example.authenticate"
timeout_ms = 800
realms = ["realm1"]
"""


calls_in_flight = []


async def authenticator(router, calls):
    """An anonymous session on `auth` that registers the procedure."""
    session = await connect(router, realm="auth")

    in_flight = {"now": 0, "max": 0}
    calls_in_flight.append(in_flight)

    async def authenticate(realm, authid, details):
        calls.append((realm, authid, details))
        in_flight["now"] += 1
        in_flight["max"] = max(in_flight["max"], in_flight["now"])
        try:
            return await answer(authid, details)
        finally:
            in_flight["now"] -= 1

    async def answer(authid, details):
        secret = details.get("ticket") or details.get("password")
        if secret == "good":
            return {"role": "backend", "extra": {"x": 1}}
        if secret == "role-only":
            return "reader"
        if secret == "renamed":
            return {"role": "reader", "authid": "dyn-" + (authid or "none")}
        if secret == "slow":
            await asyncio.sleep(3)
            return "backend"
        raise ApplicationError("com.example.invalid_ticket", "no")

    registration = await session.register(authenticate, "com.example.authenticate")
    return session, registration


def test_dynamic_authenticator(router_factory):
    router = router_factory(DYNAMIC)
    calls = []

    async def main():
        # Not registered yet: refused.
        assert await join_fails(router, authid="ann", secret="good") == "wamp.error.not_authorized"
        auth, registration = await authenticator(router, calls)
        s = await connect(router, authmethods=["ticket"], authid="ann", secret="good")
        assert (s.details.authid, s.details.authrole, s.details.authprovider) == \
            ("ann", "backend", "dynamic")
        await s.publish("com.allowed.x", 1, options=ACK)
        r = await connect(router, authmethods=["ticket"], authid="ann", secret="role-only",
                          transport="rawsocket", serializer="msgpack")
        assert r.details.authrole == "reader"
        n = await connect(router, authmethods=["ticket"], authid="ann", secret="renamed")
        assert (n.details.authid, n.details.authrole) == ("dyn-ann", "reader")
        assert await join_fails(router, authid="ann", secret="bad") == "wamp.error.not_authorized"
        started = asyncio.get_running_loop().time()
        assert await join_fails(router, authid="ann", secret="slow") == "wamp.error.not_authorized"
        assert asyncio.get_running_loop().time() - started < 2.0, "the timeout cut the wait short"
        # MQTT passwords go through it too (blocking socket: off the event loop).
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, connack_code, router, "dev", "good") == 0
        assert await loop.run_in_executor(None, connack_code, router, "dev", "bad", 5) == 0x86
        # Unregistered again: refused.
        await registration.unregister()
        assert await join_fails(router, authid="ann", secret="good") == "wamp.error.not_authorized"
        for session in (s, r, n, auth):
            session.leave()

    run(main())
    realm, authid, details = calls[0]
    assert (realm, authid) == ("realm1", "ann")
    assert details["authmethod"] == "ticket" and details["ticket"] == "good"
    assert details["transport"]["type"] == "websocket"
    assert details["transport"]["peer"] == "127.0.0.1"
    mqtt = next(d for _, a, d in calls if d["authmethod"] == "password")
    assert mqtt["password"] == "good" and mqtt["client_id"].startswith("t-")
    log = router.log_path.read_text()
    assert "not registered" in log
    assert "refused (com.example.invalid_ticket)" in log
    assert "com.example.authenticate: timed out" in log or "no answer" in log


def test_dynamic_authenticator_calls_in_flight_bound(router_factory):
    router = router_factory(DYNAMIC.replace("timeout_ms = 800", "timeout_ms = 1000\ncalls_in_flight_max = 1"))
    calls = []

    async def main():
        auth, _ = await authenticator(router, calls)
        slow = asyncio.ensure_future(join_fails(router, authid="a", secret="slow"))
        await asyncio.sleep(0.2)
        started = asyncio.get_running_loop().time()
        # The one slot is busy with the slow login until its timeout: this one waits, and
        # gets the slot only when its own time is nearly up.
        assert await join_fails(router, authid="b", secret="slow") == "wamp.error.not_authorized"
        assert await slow == "wamp.error.not_authorized"
        assert asyncio.get_running_loop().time() - started < 2.0
        auth.leave()

    run(main())
    assert calls_in_flight[-1]["max"] == 1, "never two calls at once"


def test_static_users_and_anonymous_are_unchanged_with_hooks(router_factory, hook):
    router = router_factory(http_config(hook) + '\n[auth.dynamic]\nrealm = "auth"\nprocedure = "p"\n')

    async def main():
        a = await connect(router)
        assert a.details.authmethod == "anonymous"
        j = await connect(router, authmethods=["ticket"], authid="joe", secret="s3cret")
        assert j.details.authprovider == "static"
        a.leave()
        j.leave()

    run(main())
    # MQTT without a password: the anonymous rules, no hook call.
    assert connack_code_no_password(router, "dev") == 0
    assert hook.calls() == 0


def connack_code_no_password(router, username):
    body = s("MQTT") + bytes([4, 0x02 | 0x80]) + struct.pack("!H", 60)
    raw = Raw(router)
    try:
        raw.send(packet(0x10, body + s(new_id()) + s(username)))
        _, _, connack = raw.expect(2)
        return connack[1]
    finally:
        raw.close()
