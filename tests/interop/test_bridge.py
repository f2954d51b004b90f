"""The HTTP bridge on the admin listener (docs/admin.md): POST /api/v1/publish reaches WAMP
(autobahn-python) and MQTT (paho) subscribers with its permanent ID, POST /api/v1/call
calls a WAMP callee; a bearer token from `[[user]] http_tokens` acts as that user, with
its role's permissions. Every client mistake is a 4xx with a JSON error."""

import asyncio
import base64
import json
import urllib.error
import urllib.request

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import SubscribeOptions

from mqtt_client import Client, new_id
from wamp_client import connect, run, wait_for

TOKEN = "joe-token-0123456789"
READER_TOKEN = "reader-token-0123456789"

CONFIG = """
[router]
auto_create_realms = false
realms = ["realm1", "other"]

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
http_tokens = ["%s"]

[[user]]
authid = "reader"
role = "reader"
realms = ["realm1"]
http_tokens = ["%s"]
""" % (TOKEN, READER_TOKEN)


def post(router, path, body, token=TOKEN, raw=None):
    """(status, JSON answer) of a POST to the bridge."""
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(router.admin_url + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_publish_reaches_wamp_and_mqtt_subscribers_with_its_permanent_id(router_factory):
    router = router_factory(CONFIG)
    mqtt_sub = Client(router, version=5)
    mqtt_sub.connect()
    mqtt_sub.subscribe("com/allowed/#", qos=1)
    events = []

    async def main():
        s = await connect(router)
        await s.subscribe(lambda *args, **kwargs: events.append((args, kwargs)), "com.allowed.",
                          options=SubscribeOptions(match="prefix", details_arg="details"))
        loop = asyncio.get_running_loop()
        status, answer = await loop.run_in_executor(
            None, post, router, "/api/v1/publish",
            {"topic": "com.allowed.x", "args": [1, "two"], "kwargs": {"k": True}})
        assert status == 200, answer
        await wait_for(lambda: events)
        s.leave()
        return answer["id"]

    published_id = run(main())
    args, kwargs = events[0]
    details = kwargs.pop("details")
    assert args == (1, "two") and kwargs == {"k": True}
    assert details.publication == published_id
    message = mqtt_sub.get()
    assert message.topic == "com/allowed/x"
    assert json.loads(message.payload) == {"args": [1, "two"], "kwargs": {"k": True}}
    # A raw payload reaches MQTT byte for byte; retained, a later subscriber gets it.
    raw = bytes(range(256))
    status, answer = post(router, "/api/v1/publish",
                          {"topic": "com.allowed.raw", "payload_base64": base64.b64encode(raw).decode(),
                           "retain": True})
    assert status == 200 and answer["id"] > published_id, answer
    assert mqtt_sub.get().payload == raw
    mqtt_sub.disconnect()
    late = Client(router, version=5)
    late.connect()
    late.subscribe("com/allowed/raw", qos=1)
    assert late.get().payload == raw
    late.disconnect()
    status, answer = post(router, "/api/v1/publish",
                          {"topic": "com.allowed.text", "payload": "hello", "acknowledge": False})
    assert status == 202, answer


def test_call_reaches_a_wamp_callee_and_maps_its_errors(router_factory):
    router = router_factory(CONFIG)
    seen = []

    async def main():
        callee = await connect(router, authmethods=["ticket"], authid="joe", secret="s3cret")

        def add(a, b, details=None):
            seen.append(details.caller_authid if details else None)
            return a + b

        async def slow():
            await asyncio.sleep(2)
            return "late"

        def oops():
            raise ApplicationError("com.allowed.oops", "no", reason=7)

        from autobahn.wamp.types import RegisterOptions
        await callee.register(add, "com.allowed.add", options=RegisterOptions(details_arg="details"))
        await callee.register(slow, "com.allowed.slow")
        await callee.register(oops, "com.allowed.oops")
        loop = asyncio.get_running_loop()

        def call(body, token=TOKEN):
            return loop.run_in_executor(None, post, router, "/api/v1/call", body, token)

        assert await call({"procedure": "com.allowed.add", "args": [2, 3]}) == \
            (200, {"args": [5], "kwargs": {}})
        status, answer = await call({"procedure": "com.allowed.oops"})
        assert status == 502 and answer["error"] == "com.allowed.oops", answer
        assert answer["args"] == ["no"] and answer["kwargs"] == {"reason": 7}
        status, answer = await call({"procedure": "com.allowed.nobody"})
        assert (status, answer["error"]) == (404, "wamp.error.no_such_procedure"), answer
        status, answer = await call({"procedure": "com.allowed.slow", "timeout_ms": 300})
        assert status == 504, answer
        # The reader's role may not call.
        status, answer = await call({"procedure": "com.allowed.add", "args": [1, 1]}, READER_TOKEN)
        assert status == 403, answer
        callee.leave()

    run(main())
    assert seen == ["joe"], "the callee sees the token's user"


@pytest.mark.parametrize("path", ["/api/v1/publish", "/api/v1/call"])
def test_client_mistakes_get_a_4xx_with_a_json_error(router_factory, path):
    router = router_factory(CONFIG)
    field = "topic" if path.endswith("publish") else "procedure"
    good = {field: "com.allowed.x"}
    cases = [
        (dict(body=good, token=None), 401),
        (dict(body=good, token="not-a-token-of-anyone"), 401),
        (dict(body=None, raw=b"{not json"), 400),
        (dict(body={**good, "bogus": 1}), 400),
        (dict(body={field: "com..x"}), 400),
        (dict(body={field: "com.allowed.\u0000x"}), 400),
        # WAMP JSON reads "\0"+base64 as binary: one that is not base64 is refused, as
        # a WAMP JSON peer's message would be (found by the bridge_json fuzz target).
        (dict(body={**good, "args": [{"b": "\u0000AQ"}]}), 400),
        (dict(body={**good, "kwargs": {"b": "\u0000%%"}}), 400),
        # Deeper than a WAMP message carries (62 levels inside an argument; serde_json
        # alone reads 128): refused, not relayed as an EVENT no WAMP decoder takes.
        (dict(body=None, raw=('{"%s": "com.allowed.x", "args": [%s1%s]}'
                              % (field, "[" * 63, "]" * 63)).encode()), 400),
        (dict(body={**good, "realm": "nowhere"}), 404),
        (dict(body={**good, "realm": "other"}, token=READER_TOKEN), 403),
        (dict(body={field: "com.denied.x"}), 403),
    ]
    if path.endswith("publish"):
        cases += [
            (dict(body={field: "wamp.session.on_join"}), 403),
            (dict(body={**good, "payload": "x", "args": [1]}), 400),
            (dict(body={**good, "payload_base64": "%%%"}), 400),
            (dict(body={field: "com.allowed.x"}, token=READER_TOKEN), 403),
        ]
    for kwargs, expected in cases:
        status, answer = post(router, path, **kwargs)
        assert status == expected, (kwargs, status, answer)
        assert answer["status"] == expected and answer["error"], answer
    assert "panicked" not in router.logs()
    # Still serving.
    if path.endswith("publish"):
        assert post(router, path, good)[0] == 200


def kv(router, method, key, body=None, token=TOKEN, headers=None, content_type="application/json"):
    """(status, JSON answer, ETag) of a request to /api/v1/kv/{key}."""
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{router.admin_url}/api/v1/kv/{key}", data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", content_type)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), response.headers.get("ETag")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers.get("ETag")


def test_kv_reads_writes_and_conditions_on_retained_keys(router_factory):
    router = router_factory(CONFIG)
    key = "com.allowed.lock"
    assert kv(router, "GET", key)[0] == 404
    status, answer, etag = kv(router, "PUT", key, {"owner": "a"})
    assert status == 200 and etag == f'"{answer["id"]}"', (status, answer, etag)
    written = answer["id"]
    status, answer, etag = kv(router, "GET", key)
    assert status == 200 and answer["args"] == [{"owner": "a"}] and answer["id"] == written
    assert etag == f'"{written}"'
    # The same key is MQTT's retained message.
    late = Client(router, version=5)
    late.connect()
    late.subscribe("com/allowed/lock", qos=1)
    assert json.loads(late.get().payload) == {"owner": "a"}
    late.disconnect()
    # Conditions map onto the sync service's `when`.
    assert kv(router, "PUT", key, {"owner": "b"}, headers={"If-None-Match": "*"})[0] == 412
    assert kv(router, "DELETE", key, headers={"Fox-When": '{"owner": "b"}'})[0] == 412
    assert kv(router, "GET", key)[1]["args"] == [{"owner": "a"}], "refused writes changed nothing"
    assert kv(router, "DELETE", key, headers={"Fox-When": '{"owner": "a"}'})[0] == 200
    assert kv(router, "GET", key)[0] == 404
    assert kv(router, "PUT", key, {"owner": "b"}, headers={"If-None-Match": "*"})[0] == 200
    # A raw value, as MQTT carries it.
    assert kv(router, "PUT", "com.allowed.raw", b"hello", content_type="text/plain")[0] == 200
    assert kv(router, "GET", "com.allowed.raw")[1]["payload"] == "hello"
    # Permissions: the reader may read but not write; nobody writes outside com.allowed.
    assert kv(router, "GET", key, token=READER_TOKEN)[0] == 200
    assert kv(router, "PUT", key, {"x": 1}, token=READER_TOKEN)[0] == 403
    assert kv(router, "PUT", "com.denied.k", {"x": 1})[0] == 403
    # Client mistakes.
    for args, kwargs, expected in [
        (("GET", "com..x"), {}, 400),
        (("PUT", key, b"{nope"), {}, 400),
        (("PUT", key, {"x": 1}), {"headers": {"If-Match": '"1"'}}, 400),
        (("PUT", key, {"x": 1}), {"headers": {"Fox-When": "{nope"}}, 400),
        (("PUT", key, b""), {"content_type": "text/plain"}, 400),
        (("GET", key), {"token": None}, 401),
    ]:
        status, answer, _ = kv(router, *args, **kwargs)
        assert status == expected and answer["error"], (args, kwargs, status, answer)
    status, answer, _ = kv(router, "GET", key + "?realm=nowhere")
    assert status == 404 and "nowhere" in answer["error"], answer
