"""Bad input on both WAMP transports, sent with raw clients: every violation gets ABORT
wamp.error.protocol_violation and a closed connection, the router never crashes, and other
sessions go on working. RawSocket handshake errors and PING/PONG."""

import os

import pytest

from wamp_client import SERIALIZER_IDS, RawSocketClient, WebSocketClient, encode

LIMIT_CONFIG = """
[limits]
message_size_max_bytes = 4096
"""

ABORT, GOODBYE, ERROR, PUBLISHED, SUBSCRIBED, RESULT = 3, 6, 8, 17, 33, 50


def client(router, kind):
    """kind: 'ws-json', 'ws-msgpack', 'ws-cbor', 'raw-json', 'raw-msgpack', 'raw-cbor'."""
    transport, serializer = kind.split("-")
    if transport == "ws":
        c = WebSocketClient(router.addr["ws"], protocols=(f"wamp.2.{serializer}",))
        assert c.upgraded(), c.status_line
        assert c.protocol == f"wamp.2.{serializer}"
        return c
    c = RawSocketClient(router.rawsocket, serializer)
    reply = c.handshake()
    assert reply[0] == 0x7F and reply[1] & 0x0F == SERIALIZER_IDS[serializer], reply.hex()
    return c


def expect_abort(c, router, what):
    try:
        msg = c.recv()
    except Exception as e:  # noqa: BLE001 - the failure message names what came instead
        raise AssertionError(f"{what}: expected ABORT, got {e!r}; router log:\n{router.logs()}") from None
    assert msg[0] == ABORT, f"{what}: expected ABORT, got {msg}"
    assert msg[2] == "wamp.error.protocol_violation", f"{what}: ABORT reason {msg[2]}"
    assert isinstance(msg[1], dict)
    assert c.is_closed(2.0), f"{what}: connection not closed after ABORT"


class Bystander:
    """A session joined before the bad input; it must keep working afterwards."""

    def __init__(self, router):
        self.router = router
        self.c = RawSocketClient(router.rawsocket, "json")
        self.c.join()
        self.request = 100

    def check(self):
        assert self.router.proc.poll() is None, f"router exited: {self.router.logs()}"
        self.request += 1
        self.c.send([48, self.request, {}, "wamp.session.count"])
        reply = self.c.recv()
        while reply[0] != RESULT:  # skip meta events if any
            assert reply[0] != ABORT and reply[0] != GOODBYE, reply
            reply = self.c.recv()
        assert reply[1] == self.request and reply[3][0] >= 1, reply
        fresh = RawSocketClient(self.router.rawsocket, "msgpack")
        fresh.join()
        fresh.close()


KINDS = ["ws-json", "ws-msgpack", "raw-json", "raw-msgpack", "raw-cbor"]


@pytest.mark.parametrize("kind", ["ws-json", "raw-json"])
def test_malformed_json(router, kind):
    bystander = Bystander(router)
    for payload in (b"[1, \"realm1\", {", b"not json at all", b"[1, \"realm1\", {}]]"):
        c = client(router, kind)
        c.send_frame(payload)
        expect_abort(c, router, f"{payload!r}")
    bystander.check()


def test_invalid_utf8_json(router):
    """Invalid UTF-8: on RawSocket an undecodable message (ABORT); in a WebSocket text frame
    RFC 6455 makes it a WebSocket failure, so ABORT or a close frame with code 1007."""
    bystander = Bystander(router)
    raw = client(router, "raw-json")
    raw.join()
    raw.send_frame(b'[16, 1, {}, "com.x", ["\xff\xfe"]]')
    expect_abort(raw, router, "invalid UTF-8 on RawSocket")
    ws = client(router, "ws-json")
    ws.join()
    ws.send_frame(b'[16, 1, {}, "com.x", ["\xff\xfe"]]', opcode=1)
    opcode, payload = ws.recv_frame()
    if opcode == 1:
        msg = __import__("json").loads(payload)
        assert msg[0] == ABORT and msg[2] == "wamp.error.protocol_violation", msg
    else:
        assert opcode == 8, opcode
        assert payload[:2] == (1007).to_bytes(2, "big"), \
            f"close frame without ABORT must carry code 1007 (invalid payload data), got {payload.hex() or 'no code'}"
    assert ws.is_closed(2.0)
    bystander.check()


@pytest.mark.parametrize("kind", ["raw-msgpack", "raw-cbor", "ws-cbor"])
def test_binary_garbage(router, kind):
    bystander = Bystander(router)
    c = client(router, kind)
    c.join()
    c.send_frame(bytes([0xC1]) + os.urandom(8) if "msgpack" in kind else b"\xff\xff\xff\x1c")
    expect_abort(c, router, "undecodable binary frame")
    bystander.check()


@pytest.mark.parametrize("kind", ["ws-json", "raw-msgpack"])
@pytest.mark.parametrize("payload", [{"a": 1}, "hello", 42, [], ["1", "realm1", {}], [1, "realm1"]],
                         ids=["dict", "string", "int", "empty-list", "type-not-int", "hello-missing-details"])
def test_not_a_wamp_message(router, kind, payload):
    bystander = Bystander(router)
    c = client(router, kind)
    c.send(payload)
    expect_abort(c, router, f"{payload!r}")
    bystander.check()


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_message_type(router, kind):
    bystander = Bystander(router)
    c = client(router, kind)
    c.join()
    c.send([999, 1, {}])
    expect_abort(c, router, "message type 999")
    bystander.check()


@pytest.mark.parametrize("kind", ["ws-json", "raw-cbor"])
def test_second_hello(router, kind):
    bystander = Bystander(router)
    c = client(router, kind)
    c.join()
    c.send([1, "realm1", {"roles": {"caller": {}}}])
    expect_abort(c, router, "second HELLO")
    bystander.check()


def test_request_before_hello(router):
    bystander = Bystander(router)
    c = client(router, "ws-json")
    c.send([32, 1, {}, "com.test.topic"])
    expect_abort(c, router, "SUBSCRIBE before HELLO")
    bystander.check()


ROUTER_ONLY = {
    "WELCOME": [2, 123, {"roles": {}}],
    "CHALLENGE": [4, "ticket", {}],
    "PUBLISHED": [17, 1, 1],
    "SUBSCRIBED": [33, 1, 1],
    "UNSUBSCRIBED": [35, 1],
    "EVENT": [36, 1, 1, {}],
    "RESULT": [50, 1, {}],
    "REGISTERED": [65, 1, 1],
    "UNREGISTERED": [67, 1],
    "INVOCATION": [68, 1, 1, {}],
    "INTERRUPT": [69, 1, {}],
}


@pytest.mark.parametrize("name", list(ROUTER_ONLY))
def test_router_to_client_message_from_client(router, name):
    bystander = Bystander(router)
    c = client(router, "ws-json")
    c.join()
    c.send(ROUTER_ONLY[name])
    expect_abort(c, router, name)
    bystander.check()


def test_authenticate_without_challenge(router):
    c = client(router, "raw-json")
    c.join()
    c.send([5, "signature", {}])
    expect_abort(c, router, "AUTHENTICATE in an established session")


@pytest.mark.parametrize("kind", ["ws-json", "ws-msgpack", "raw-json", "raw-cbor"])
def test_message_above_size_limit(router_factory, kind):
    router = router_factory(LIMIT_CONFIG)
    bystander = Bystander(router)
    c = client(router, kind)
    c.join()
    # just under the limit is fine
    c.send([16, 1, {"acknowledge": True}, "com.test.size", ["x" * 3000]])
    reply = c.recv()
    assert reply[0] == PUBLISHED and reply[1] == 1, reply
    c.send([16, 2, {"acknowledge": True}, "com.test.size", ["x" * 10000]])
    expect_abort(c, router, "10 kB message with a 4 kB limit")
    bystander.check()


def test_rawsocket_announces_the_size_limit(router_factory):
    router = router_factory(LIMIT_CONFIG)
    c = RawSocketClient(router.rawsocket, "json")
    reply = c.handshake(length_exp=15)
    assert reply == bytes([0x7F, (3 << 4) | 1, 0, 0]), f"handshake reply {reply.hex()}: 2^(9+3) = 4096 expected"


def test_rawsocket_bad_magic(router):
    bystander = Bystander(router)
    c = RawSocketClient(router.rawsocket, "json")
    c.sock.sendall(bytes([0x7E, 0xF1, 0, 0]))
    data = b""
    c.sock.settimeout(2.0)
    while True:
        chunk = c.sock.recv(100)
        if not chunk:
            break
        data += chunk
    assert data == b"", f"router answered a bad magic byte with {data.hex()}"
    bystander.check()


def test_rawsocket_unsupported_serializer(router):
    bystander = Bystander(router)
    c = RawSocketClient(router.rawsocket, "json")
    reply = c.handshake(serializer_id=5)
    assert reply == bytes([0x7F, 0x10, 0, 0]), reply.hex()
    assert c.is_closed(2.0)
    bystander.check()


@pytest.mark.parametrize("joined", [False, True])
def test_rawsocket_ping_pong(router, joined):
    c = RawSocketClient(router.rawsocket, "msgpack")
    if joined:
        c.join()
    else:
        assert c.handshake()[0] == 0x7F
    for payload in (b"ping-payload-\x00\xff", b""):
        c.send_frame(payload, frame_type=1)
        frame_type, got = c.recv_frame()
        assert (frame_type, got) == (2, payload)
    if joined:
        c.send([48, 7, {}, "wamp.session.count"])
        assert c.recv()[:2] == [RESULT, 7]


def test_rawsocket_unknown_frame_type(router):
    bystander = Bystander(router)
    c = RawSocketClient(router.rawsocket, "json")
    c.join()
    c.send_frame(encode("json", [48, 1, {}, "wamp.session.count"]), frame_type=3)
    expect_abort(c, router, "frame type 3")
    bystander.check()


def test_invalid_uris_get_error(router):
    c = client(router, "ws-json")
    c.join()
    c.send([16, 1, {"acknowledge": True}, "com.test..bad"])
    assert c.recv()[:5] == [ERROR, 16, 1, {}, "wamp.error.invalid_uri"]
    c.send([32, 2, {}, "com.test bad"])
    assert c.recv()[:5] == [ERROR, 32, 2, {}, "wamp.error.invalid_uri"]
    c.send([64, 3, {}, "com..bad"])
    assert c.recv()[:5] == [ERROR, 64, 3, {}, "wamp.error.invalid_uri"]
    c.send([48, 4, {}, "com.#bad"])
    assert c.recv()[:5] == [ERROR, 48, 4, {}, "wamp.error.invalid_uri"]
    c.send([48, 6, {}, "wamp.session.count"])
    assert c.recv()[:2] == [RESULT, 6]


def test_a_uri_with_nul_gets_error(router):
    """U+0000 in a URI (MsgPack can carry one) is refused: JSON peers would read it as
    binary and MQTT forbids it in topic names."""
    c = client(router, "ws-msgpack")
    c.join()
    c.send([16, 1, {"acknowledge": True}, "com.test.\x00bad"])
    assert c.recv()[:5] == [ERROR, 16, 1, {}, "wamp.error.invalid_uri"]
    c.send([32, 2, {}, "com.\x00"])
    assert c.recv()[:5] == [ERROR, 32, 2, {}, "wamp.error.invalid_uri"]
    c.send([48, 3, {}, "wamp.session.count"])
    assert c.recv()[:2] == [RESULT, 3]


def test_websocket_handshake_refusals(router):
    wrong_path = WebSocketClient(router.addr["ws"], path="/nope")
    assert not wrong_path.upgraded() and " 404 " in wrong_path.status_line + " ", wrong_path.status_line
    wrong_protocol = WebSocketClient(router.addr["ws"], protocols=("wamp.2.ubjson", "mqtt"))
    assert not wrong_protocol.upgraded() and " 400 " in wrong_protocol.status_line + " ", wrong_protocol.status_line
    preferred = WebSocketClient(router.addr["ws"], protocols=("wamp.2.cbor", "wamp.2.json"))
    assert preferred.upgraded() and preferred.protocol == "wamp.2.cbor"
    preferred.join()


def test_rawsocket_framing_split_and_coalesced(router):
    """A message split over many TCP segments, and several messages in one segment."""
    import time as _time
    c = RawSocketClient(router.rawsocket, "json")
    c.sock.setsockopt(__import__("socket").IPPROTO_TCP, __import__("socket").TCP_NODELAY, 1)
    assert c.handshake()[0] == 0x7F
    payload = encode("json", [1, "realm1", {"roles": {"caller": {}, "subscriber": {}}}])
    frame = len(payload).to_bytes(4, "big") + payload
    for i in range(len(frame)):
        c.sock.sendall(frame[i:i + 1])
        if i < 8:
            _time.sleep(0.01)
    assert c.recv()[0] == 2
    frames = b"".join(len(p).to_bytes(4, "big") + p for p in
                      (encode("json", [48, n, {}, "wamp.session.count"]) for n in (1, 2, 3)))
    c.sock.sendall(frames)
    assert [c.recv()[:2] for _ in range(3)] == [[RESULT, 1], [RESULT, 2], [RESULT, 3]]


def test_websocket_fragmented_message_and_ping(router):
    c = client(router, "ws-json")
    c.join()
    payload = encode("json", [48, 1, {}, "wamp.session.count"])
    parts = [payload[:5], payload[5:12], payload[12:]]
    # text frame without FIN, continuation, final continuation
    for index, part in enumerate(parts):
        opcode = 1 if index == 0 else 0
        fin = 0x80 if index == len(parts) - 1 else 0
        mask = os.urandom(4)
        header = bytes([fin | opcode, 0x80 | len(part)]) + mask
        c.sock.sendall(header + bytes(b ^ mask[i % 4] for i, b in enumerate(part)))
    assert c.recv()[:2] == [RESULT, 1]
    c.send_frame(b"are you there", opcode=9)
    opcode, got = c.recv_frame()
    assert (opcode, got) == (10, b"are you there")


def test_wrong_message_instead_of_authenticate(router_factory):
    router = router_factory('[auth]\nanonymous = false\n[[role]]\nname = "r"\n'
                            '[[user]]\nauthid = "joe"\nsecret = "pw"\nrole = "r"\n')
    c = client(router, "ws-json")
    c.send([1, "realm1", {"roles": {"caller": {}}, "authmethods": ["ticket"], "authid": "joe"}])
    challenge = c.recv()
    assert challenge[:2] == [4, "ticket"], challenge
    c.send([16, 1, {}, "com.test"])
    expect_abort(c, router, "PUBLISH instead of AUTHENTICATE")


def test_bad_input_leaves_autobahn_sessions_working(router):
    """One session per transport survives a burst of bad clients on every transport."""
    from wamp_client import connect, run, wait_until

    async def main():
        sub = await connect(router, transport="rawsocket", serializer="cbor")
        pub = await connect(router, transport="websocket", serializer="msgpack")
        got = []
        await sub.subscribe(lambda x: got.append(x), "com.test.survive")
        await pub.register(lambda: "alive", "com.test.alive")
        for kind in ("ws-json", "raw-msgpack", "raw-json"):
            c = client(router, kind)
            c.join()
            c.send([999])
            expect_abort(c, router, kind)
            garbage = RawSocketClient(router.rawsocket, "json")
            garbage.sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert garbage.is_closed(2.0)
        from autobahn.wamp.types import PublishOptions
        await pub.publish("com.test.survive", 1, options=PublishOptions(acknowledge=True))
        await wait_until(lambda: got == [1])
        assert await sub.call("com.test.alive") == "alive"
        assert await sub.call("wamp.session.count") == 2

    run(main())


def test_unknown_ids_get_errors(router):
    c = client(router, "raw-json")
    c.join()
    c.send([34, 1, 424242])
    assert c.recv()[:5] == [ERROR, 34, 1, {}, "wamp.error.no_such_subscription"]
    c.send([66, 2, 424242])
    assert c.recv()[:5] == [ERROR, 66, 2, {}, "wamp.error.no_such_registration"]
    c.send([48, 3, {}, "wamp.session.count"])
    assert c.recv()[:2] == [RESULT, 3]


def test_websocket_without_subprotocol_speaks_json(router):
    c = WebSocketClient(router.addr["ws"], protocols=())
    assert c.upgraded(), c.status_line
    assert c.protocol is None
    c.join()
    c.send([48, 1, {}, "wamp.session.count"])
    assert c.recv()[:2] == [RESULT, 1]


HOSTILE = {
    # nesting far beyond any sane depth: must not overflow the router's stack
    "json-deep-nesting": ("raw-json", b"[" * 200_000 + b"]" * 200_000),
    "json-deep-dict": ("ws-json", b'[16, 1, {}, "com.x", [' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"]]"),
    "msgpack-deep-nesting": ("raw-msgpack", b"\x91" * 300_000 + b"\x01"),
    "cbor-deep-nesting": ("raw-cbor", b"\x81" * 300_000 + b"\x01"),
    # declared lengths far beyond the bytes sent: must not pre-allocate
    "msgpack-huge-array-header": ("raw-msgpack", b"\xdd\xff\xff\xff\xff\x01"),
    "msgpack-huge-map-header": ("ws-msgpack", b"\xdf\xff\xff\xff\xff\x01"),
    "msgpack-huge-bin-header": ("raw-msgpack", b"\x94\x10\x01\x80\xc6\xff\xff\xff\xff"),
    "cbor-huge-array-header": ("raw-cbor", b"\x9b\x00\xff\xff\xff\xff\xff\xff\xff\x01"),
    "cbor-huge-bytes-header": ("ws-cbor", b"\x84\x10\x01\xa0\x5b\x00\xff\xff\xff\xff\xff\xff\xff"),
    "msgpack-invalid-utf8-str": ("raw-msgpack", b"\x94\x10\x01\x80\xa3\xff\xfe\xfd"),
    "cbor-invalid-utf8-str": ("raw-cbor", b"\x84\x10\x01\xa0\x63\xff\xfe\xfd"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_encodings_get_abort_not_a_crash(router, name):
    kind, payload = HOSTILE[name]
    bystander = Bystander(router)
    c = client(router, kind)
    c.join()
    c.send_frame(payload)
    expect_abort(c, router, name)
    bystander.check()


def test_out_of_range_numbers_do_not_crash(router):
    bystander = Bystander(router)
    c = client(router, "ws-json")
    c.join()
    c.send_frame(b'[16, 1, {"acknowledge": true}, "com.x", [123456789012345678901234567890, 1e400, -1e999]]')
    reply = c.recv()
    assert reply[0] in (PUBLISHED, ABORT, ERROR), reply
    bystander.check()
