"""The authorization hooks (docs/auth.md, [authorization]): the HTTP hook (as EMQX's HTTP
authorizer) and the dynamic authorizer (as Crossbar.io's) decide publish, subscribe, call
and register for WAMP (autobahn-python) and MQTT (raw packets for the exact reason codes,
paho for deliveries); "ignore" leaves the decision to the roles' rules.

The HTTP hook is a small http.server on 127.0.0.1:0 that answers by the URI and records
every request (the per-session cache shows in the count)."""

import asyncio
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, RegisterOptions, SubscribeOptions

from mqtt_client import Client, Raw, connect_packet, new_id, packet, publish_packet, s, varint
from wamp_client import connect, run, wait_for

ACK = PublishOptions(acknowledge=True)

# The anonymous role's own rules: everything under com.ignored.yes., and subscribing
# anywhere under com. (what "ignore" falls back to).
ROLES = """
[router]
realms = ["realm1", "auth"]

[[role]]
name = "anonymous"
permissions = [
  { uri = "com.ignored.yes.", match = "prefix", publish = true, subscribe = true, call = true, register = true },
  { uri = "com.", match = "prefix", subscribe = true },
  { uri = "com.example.authorize", register = true },
]
"""


class Hook:
    """The HTTP authorization hook: answers by the URI, records every request."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with hook.lock:
                    hook.requests.append(body)
                status, answer = hook.answer(body)
                data = json.dumps(answer).encode()
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
        return f"http://{host}:{port}/authorize"

    def answer(self, body):
        uri = body["uri"]
        if uri.startswith("com.denied."):
            return 200, {"result": "deny"}
        if uri.startswith("com.allowed."):
            return 200, {"result": "allow"}
        if uri.startswith("com.nocache."):
            return 200, {"result": "allow", "cache": False}
        if uri.startswith("com.slow."):
            time.sleep(0.3)
            return 200, {"result": "allow"}
        if uri.startswith("com.error."):
            return 500, {"result": "allow"}
        return 200, {"result": "ignore"}

    def calls(self, uri=None, action=None):
        with self.lock:
            return sum(1 for r in self.requests
                       if uri in (None, r["uri"]) and action in (None, r["action"]))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def http_config(url, **settings):
    lines = [f"{k} = {v}" for k, v in settings.items()]
    return ROLES + "\n[authorization]\n" + "\n".join(lines) + \
        f'\n[authorization.http]\nurl = "{url}"\ntimeout_ms = 2000\n'


async def refused(coro):
    with pytest.raises(ApplicationError) as raised:
        await coro
    return raised.value.error


# ---------------------------------------------------------------------------------------
# WAMP


def test_http_hook_decides_wamp_publish_subscribe_call_register(router_factory, hook):
    router = router_factory(http_config(hook.url))

    async def main():
        s = await connect(router)
        await s.publish("com.allowed.x", 1, options=ACK)
        assert await refused(s.publish("com.denied.x", 1, options=ACK)) == "wamp.error.not_authorized"
        # "ignore": the role's rules decide.
        await s.publish("com.ignored.yes.x", 1, options=ACK)
        assert await refused(s.publish("com.ignored.no.x", 1, options=ACK)) == \
            "wamp.error.not_authorized"
        await s.subscribe(lambda *a: None, "com.allowed.", options=SubscribeOptions(match="prefix"))
        assert await refused(s.subscribe(lambda *a: None, "com.denied.x")) == \
            "wamp.error.not_authorized"
        await s.register(lambda: 42, "com.allowed.answer")
        assert await refused(s.register(lambda: 0, "com.denied.answer")) == \
            "wamp.error.not_authorized"
        assert await s.call("com.allowed.answer") == 42
        assert await refused(s.call("com.denied.answer")) == "wamp.error.not_authorized"
        # Publishing under wamp. is refused whatever a hook would say: it is not asked.
        assert await refused(s.publish("wamp.session.on_join", 1, options=ACK)) == \
            "wamp.error.not_authorized"
        assert await refused(s.register(lambda: 0, "wamp.my.procedure")) == \
            "wamp.error.not_authorized"
        session_id = s.details.session
        s.leave()
        return session_id

    session_id = run(main())
    assert hook.calls("wamp.session.on_join") == 0 and hook.calls("wamp.my.procedure") == 0
    request = next(r for r in hook.requests if r["action"] == "subscribe")
    assert request["uri"] == "com.allowed." and request["match"] == "prefix"
    assert request["realm"] == "realm1" and request["session"] == session_id
    assert request["authrole"] == "anonymous" and request["protocol"] == "wamp"
    assert request["transport"] == "websocket" and request["peer"] == "127.0.0.1"
    assert {r["action"] for r in hook.requests} == {"publish", "subscribe", "call", "register"}


def test_answers_are_cached_per_session_unless_the_hook_says_not_to(router_factory, hook):
    router = router_factory(http_config(hook.url, cache_ms=60000))

    async def main():
        for _ in range(2):
            s = await connect(router, transport="rawsocket", serializer="msgpack")
            for _ in range(5):
                await s.publish("com.allowed.a", 1, options=ACK)
                await s.publish("com.nocache.a", 1, options=ACK)
                assert await refused(s.publish("com.denied.a", 1, options=ACK)) == \
                    "wamp.error.not_authorized"
            s.leave()

    run(main())
    assert hook.calls("com.allowed.a") == 2, "once per session"
    assert hook.calls("com.denied.a") == 2, "denials are cached too"
    assert hook.calls("com.nocache.a") == 10, '"cache": false is asked every time'


def test_without_a_cache_every_message_is_asked(router_factory, hook):
    router = router_factory(http_config(hook.url, cache_ms=0))

    async def main():
        s = await connect(router)
        for _ in range(3):
            await s.publish("com.allowed.a", 1, options=ACK)
        s.leave()

    run(main())
    assert hook.calls("com.allowed.a") == 3


def test_a_failing_hook_denies_and_is_logged_once(router_factory, hook):
    # A port nobody listens on, and a hook that answers 500.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()
    router = router_factory(http_config(f"http://127.0.0.1:{closed_port}/authorize"))
    other = router_factory(http_config(hook.url))

    async def main():
        s = await connect(router)
        for _ in range(3):
            assert await refused(s.publish("com.allowed.x", 1, options=ACK)) == \
                "wamp.error.not_authorized"
        s.leave()
        t = await connect(other)
        assert await refused(t.publish("com.error.x", 1, options=ACK)) == "wamp.error.not_authorized"
        assert await refused(t.publish("com.error.x", 1, options=ACK)) == "wamp.error.not_authorized"
        t.leave()

    run(main())
    assert hook.calls("com.error.x") == 2, "a failure is not cached"
    lines = [line for line in router.log_path.read_text().splitlines()
             if "authorization hook failed" in line]
    assert len(lines) == 1, lines
    assert "status 500" in other.log_path.read_text()


def test_the_roles_setting_limits_whom_the_hooks_decide_for(router_factory, hook):
    config = http_config(hook.url, roles='["device"]') + """
[[role]]
name = "device"
permissions = []

[[user]]
authid = "d1"
secret = "pw"
role = "device"
"""
    router = router_factory(config)

    async def main():
        a = await connect(router)
        # Not a device: the rules decide, the hook is not asked.
        assert await refused(a.publish("com.allowed.x", 1, options=ACK)) == "wamp.error.not_authorized"
        d = await connect(router, authmethods=["ticket"], authid="d1", secret="pw")
        await d.publish("com.allowed.x", 1, options=ACK)
        a.leave()
        d.leave()

    run(main())
    assert [r["authid"] for r in hook.requests] == ["d1"]


# ---------------------------------------------------------------------------------------
# MQTT


def puback_reason(body):
    return body[2] if len(body) > 2 else 0


def test_http_hook_decides_mqtt_publish_subscribe_and_will(router_factory, hook):
    router = router_factory(http_config(hook.url))
    sub = Client(router, version=5)
    sub.connect()
    assert sub.subscribe("com/allowed/#", qos=1)[0].value == 1
    raw = Raw(router)
    try:
        raw.send(connect_packet(new_id(), version=5))
        raw.expect(2)
        raw.send(publish_packet("com/allowed/x", b"yes", qos=1, packet_id=1, version=5))
        assert puback_reason(raw.expect(4)[2]) == 0
        raw.send(publish_packet("com/denied/x", b"no", qos=1, packet_id=2, version=5))
        assert puback_reason(raw.expect(4)[2]) == 0x87
        # SUBSCRIBE with two filters: each decided on its own.
        body = struct.pack("!H", 3) + b"\x00" + s("com/denied/#") + b"\x01" + s("com/allowed/+") + b"\x01"
        raw.send(packet(0x82, body))
        _, _, suback = raw.expect(9)
        assert list(suback[3:]) == [0x87, 0x01], suback
    finally:
        raw.close()
    message = sub.get()
    assert (message.topic, message.payload) == ("com/allowed/x", b"yes")
    sub.expect_none()
    sub.disconnect()
    filters = {(r["uri"], r["match"], r["topic"]) for r in hook.requests if r["action"] == "subscribe"}
    assert ("com.allowed.", "wildcard", "com/allowed/+") in filters, filters
    assert ("com.denied.", "prefix", "com/denied/#") in filters, filters
    publish = next(r for r in hook.requests if r["uri"] == "com.allowed.x")
    assert publish["protocol"] == "mqtt" and publish["transport"] == "mqtt"
    assert publish["topic"] == "com/allowed/x" and publish["client_id"]
    # A will on a topic the hook denies refuses the CONNECT (5.0: 0x87, 3.1.1: 5).
    for version, code in ((5, 0x87), (4, 0x05)):
        raw = Raw(router)
        try:
            raw.send(connect_packet(new_id(), version=version, will=("com/denied/will", b"x", 0, False)))
            _, _, connack = raw.expect(2)
            assert connack[1] == code, (version, connack)
        finally:
            raw.close()
    raw = Raw(router)
    try:
        raw.send(connect_packet(new_id(), version=5, will=("com/allowed/will", b"x", 0, False)))
        _, _, connack = raw.expect(2)
        assert connack[1] == 0
    finally:
        raw.close()


def test_messages_behind_one_waiting_for_the_hook_keep_their_order(router_factory, hook):
    """Three QoS 1 publishes in one write, the first and the last waiting 0.3 s each for
    the hook: the subscriber gets all three in the order sent."""
    router = router_factory(http_config(hook.url))
    sub = Client(router, version=5)
    sub.connect()
    sub.subscribe("com/#", qos=1)
    raw = Raw(router)
    try:
        raw.send(connect_packet(new_id(), version=5))
        raw.expect(2)
        started = time.monotonic()
        raw.send(publish_packet("com/slow/1", b"1", qos=1, packet_id=1, version=5)
                 + publish_packet("com/allowed/2", b"2", qos=1, packet_id=2, version=5)
                 + publish_packet("com/slow/3", b"3", qos=1, packet_id=3, version=5))
        acks = [struct.unpack("!H", raw.expect(4)[2][:2])[0] for _ in range(3)]
        assert acks == [1, 2, 3]
        assert time.monotonic() - started >= 0.55, "both slow answers were awaited"
    finally:
        raw.close()
    got = [sub.get().payload for _ in range(3)]
    assert got == [b"1", b"2", b"3"]
    sub.disconnect()


# ---------------------------------------------------------------------------------------
# Dynamic authorizer

DYNAMIC = ROLES + """
[authorization]
realms = ["realm1"]
[authorization.dynamic]
realm = "auth"
procedure = "com.example.authorize"
timeout_ms = 1000
"""


def test_dynamic_authorizer(router_factory):
    router = router_factory(DYNAMIC)
    calls = []

    async def main():
        authorizer = await connect(router, realm="auth")

        def authorize(session, uri, action, options):
            calls.append((session, uri, action, options))
            if uri.startswith("com.allowed."):
                return True
            if uri.startswith("com.nocache."):
                return {"allow": True, "cache": False}
            if uri.startswith("com.ignored."):
                return None
            if uri.startswith("com.raise."):
                raise ApplicationError("com.example.oops")
            return False

        await authorizer.register(authorize, "com.example.authorize")
        s = await connect(router)
        await s.publish("com.allowed.x", 1, options=ACK)
        await s.publish("com.allowed.x", 1, options=ACK)
        assert await refused(s.publish("com.denied.x", 1, options=ACK)) == "wamp.error.not_authorized"
        await s.publish("com.ignored.yes.x", 1, options=ACK)
        assert await refused(s.publish("com.ignored.no.x", 1, options=ACK)) == \
            "wamp.error.not_authorized"
        assert await refused(s.publish("com.raise.x", 1, options=ACK)) == "wamp.error.not_authorized"
        for _ in range(2):
            await s.publish("com.nocache.x", 1, options=ACK)
        await s.subscribe(lambda *a: None, "com.allowed..x", options=SubscribeOptions(match="wildcard"))
        # MQTT through the same procedure (blocking socket: off the event loop).
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, mqtt_publish_reason, router, "com/allowed/m") == 0
        assert await loop.run_in_executor(None, mqtt_publish_reason, router, "com/denied/m") == 0x87
        session_id = s.details.session
        s.leave()
        authorizer.leave()
        return session_id

    session_id = run(main())
    uris = [c[1] for c in calls]
    assert uris.count("com.allowed.x") == 1, "the answer was cached"
    assert uris.count("com.nocache.x") == 2
    session, uri, action, options = next(c for c in calls if c[1] == "com.allowed..x")
    assert (action, options["match"]) == ("subscribe", "wildcard")
    assert session["session"] == session_id and session["realm"] == "realm1"
    assert session["authrole"] == "anonymous" and session["transport"]["protocol"] == "wamp"
    mqtt_call = next(c for c in calls if c[1] == "com.allowed.m")
    assert mqtt_call[0]["client_id"] and mqtt_call[3]["topic"] == "com/allowed/m"
    assert "com.example.oops" in router.log_path.read_text()


def test_dynamic_authorizer_not_registered_denies(router_factory):
    router = router_factory(DYNAMIC)

    async def main():
        s = await connect(router)
        assert await refused(s.publish("com.allowed.x", 1, options=ACK)) == "wamp.error.not_authorized"
        s.leave()

    run(main())
    assert "not registered" in router.log_path.read_text() or \
        "no_such_procedure" in router.log_path.read_text()


def mqtt_publish_reason(router, topic):
    raw = Raw(router)
    try:
        raw.send(connect_packet(new_id(), version=5))
        raw.expect(2)
        raw.send(publish_packet(topic, b"x", qos=1, packet_id=7, version=5))
        return puback_reason(raw.expect(4)[2])
    finally:
        raw.close()
