"""One end-to-end test per row of docs/bad-input.md that had none: the exact answer the
row documents (ABORT / ERROR URI, MQTT reason code or plain close, HTTP status), the log
line where the row names one, and after the bad input a fresh client that is still served
(`still_serves`). Raw clients throughout (wamp_client's RawSocketClient / WebSocketClient,
mqtt_client's Raw), so nothing in between fixes up the bad bytes."""

import socket
import struct
import time
import tomllib

import pytest

from conftest import poll_until
from mqtt_client import Client, Raw, connect_packet, new_id, packet, publish_packet, s, varint
from wamp_client import HELLO_ROLES, Closed, RawSocketClient, WebSocketClient, encode

HELLO, WELCOME, ABORT, GOODBYE, ERROR, PUBLISH, PUBLISHED = 1, 2, 3, 6, 8, 16, 17
SUBSCRIBE, SUBSCRIBED, EVENT, CALL, RESULT, REGISTER, REGISTERED = 32, 33, 36, 48, 50, 64, 65
INVOCATION, YIELD, CANCEL = 68, 70, 49
CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, PINGRESP, DISCONNECT = 2, 4, 5, 6, 7, 9, 13, 14
PROTOCOL_VIOLATION = "wamp.error.protocol_violation"


# ---------------------------------------------------------------------------------------
# Helpers

def log_text(router):
    """The whole router log (conftest's `logs()` keeps only the tail)."""
    try:
        return router.log_path.read_text()
    except OSError:
        return ""


def logged(router, text, timeout=5.0):
    poll_until(lambda: text in log_text(router), timeout, f"log line {text!r}")


def still_serves(router):
    """The router is alive, never panicked, and serves a fresh WAMP session and a fresh MQTT
    client (publish and receive)."""
    assert router.proc.poll() is None, f"router exited: {router.logs()}"
    wamp = RawSocketClient(router.rawsocket, "json")
    wamp.join()
    wamp.send([PUBLISH, 1, {"acknowledge": True}, "com.still.alive", [1]])
    assert wamp.recv()[:2] == [PUBLISHED, 1]
    wamp.close()
    mqtt = Raw(router)
    mqtt.send(connect_packet(new_id("alive"), version=5))
    assert mqtt.expect(CONNACK)[2][1] == 0
    mqtt.send(packet(0x82, struct.pack("!H", 1) + b"\x00" + s("still/alive") + b"\x00"))
    mqtt.expect(SUBACK)
    mqtt.send(publish_packet("still/alive", b"yes", version=5))
    _, _, body = mqtt.expect(3)
    assert body.endswith(b"yes")
    mqtt.close()
    assert "panicked" not in log_text(router), router.logs()


def raw_wamp(router, serializer="json", length_exp=15):
    c = RawSocketClient(router.rawsocket, serializer)
    assert c.handshake(length_exp=length_exp)[0] == 0x7F
    return c


def ws_mqtt(router):
    """A raw WebSocket at /mqtt with subprotocol `mqtt` (WebSocketClient's constructor
    expects a WAMP subprotocol, so the upgrade is done here)."""
    host, port = router.addr["ws"]
    sock = socket.create_connection((host, port), timeout=5)
    sock.sendall((f"GET /mqtt HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n").encode())
    return _upgraded(sock, "mqtt")


def _upgraded(sock, protocol):
    """A WebSocketClient over `sock`, whose upgrade request was sent: reads the 101."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "closed during the upgrade"
        head += chunk
    head, rest = head.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert f"sec-websocket-protocol: {protocol}".encode() in head.lower(), head
    c = WebSocketClient.__new__(WebSocketClient)
    c.sock, c._buffer, c.protocol = sock, rest, protocol
    c.serializer = "json"
    return c


def ws_wamp(router, path="/ws", protocols=("wamp.2.json",)):
    c = WebSocketClient(router.addr["ws"], path=path, protocols=protocols)
    assert c.upgraded(), c.status_line
    return c


def expect_abort(c, reason=PROTOCOL_VIOLATION, message=None):
    msg = c.recv()
    assert msg[0] == ABORT, f"expected ABORT, got {msg}"
    assert msg[2] == reason, msg
    if message is not None:
        assert message in msg[1].get("message", ""), msg
    assert c.is_closed(2.0), "connection not closed after ABORT"
    return msg


def expect_closed_without_data(sock, timeout=5.0):
    """Reads until the router closes; returns what it sent before."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def mqtt_connected(router, version=5, **kwargs):
    raw = Raw(router)
    raw.send(connect_packet(new_id(), version=version, **kwargs))
    _, _, ack = raw.expect(CONNACK)
    assert ack[1] == 0, ack
    return raw


def v5_disconnect_reason(raw):
    _, _, body = raw.expect(DISCONNECT)
    assert raw.closed() == [], "nothing after DISCONNECT"
    return body[0]


def v5_properties(*pairs):
    """An MQTT 5 property block from (identifier, encoded value) pairs."""
    body = b"".join(bytes([ident]) + value for ident, value in pairs)
    return body


def watch_testaments(router, topic):
    """A raw WAMP session subscribed to `topic` (for testaments)."""
    watcher = RawSocketClient(router.rawsocket, "json")
    watcher.join()
    watcher.send([SUBSCRIBE, 1, {}, topic])
    assert watcher.recv()[0] == SUBSCRIBED
    return watcher


def add_testament(c, topic, marker):
    c.send([CALL, 900, {}, "wamp.session.add_testament", [topic, [marker], {}]])
    assert c.recv()[:2] == [RESULT, 900]


# ---------------------------------------------------------------------------------------
# WAMP: malformed, truncated, out of order

@pytest.mark.parametrize("kind", ["raw-json", "raw-msgpack", "ws-json"])
def test_wamp_id_above_2_pow_53_is_abort(router, kind):
    c = raw_wamp(router, kind.split("-")[1]) if kind.startswith("raw") else ws_wamp(router)
    c.join()
    c.send([CALL, 2**53, {}, "wamp.session.count"])
    assert c.recv()[:2] == [RESULT, 2**53], "2^53 is the largest ID"
    c.send([CALL, 2**53 + 1, {}, "wamp.session.count"])
    expect_abort(c)
    logged(router, "protocol violation: undecodable message")
    still_serves(router)


def test_wamp_error_for_a_request_other_than_invocation_is_abort(router):
    c = raw_wamp(router)
    c.join()
    c.send([ERROR, CALL, 1, {}, "com.test.error"])
    expect_abort(c, message="message not allowed in an established session")
    logged(router, "protocol violation: unexpected message")
    still_serves(router)


def test_wamp_yield_error_and_cancel_for_unknown_ids_are_ignored(router):
    c = raw_wamp(router)
    c.join()
    c.send([YIELD, 424242, {}, ["late"]])
    c.send([ERROR, INVOCATION, 424243, {}, "com.test.failed"])
    c.send([CANCEL, 424244, {}])
    c.send([CALL, 7, {}, "wamp.session.count"])
    reply = c.recv()
    assert reply[:2] == [RESULT, 7], f"nothing may answer the unknown IDs, got {reply}"
    assert not c.is_closed(0.3)
    still_serves(router)


@pytest.mark.parametrize("message", [
    [SUBSCRIBE, 1, {"match": "regex"}, "com.test.x"],
    [REGISTER, 2, {"invoke": "everyone"}, "com.test.x"],
    [REGISTER, 3, {"match": "regex"}, "com.test.x"],
], ids=["subscribe-match", "register-invoke", "register-match"])
def test_wamp_unknown_match_or_invoke_policy_is_abort(router, message):
    """The decoder checks the well-known options (wamp-proto `validate.rs`): an unknown
    policy is a malformed message, as autobahn's own parser has it (ProtocolError)."""
    c = raw_wamp(router)
    c.join()
    c.send(message)
    option = "match" if "match" in message[2] else "invoke"
    expect_abort(c, message=f"Options.{option} must be one of")
    logged(router, "protocol violation: undecodable message")
    still_serves(router)


def _cut_mid_frame(router, kind):
    """A session with a testament that sends part of a frame and closes: the testament
    fires (the session ended abnormally) and nothing was answered."""
    watcher = watch_testaments(router, "com.test.testament")
    victim = raw_wamp(router) if kind == "rawsocket" else ws_wamp(router)
    victim.join()
    add_testament(victim, "com.test.testament", kind)
    payload = encode("json", [CALL, 5, {}, "wamp.session.count"])
    if kind == "rawsocket":
        victim.sock.sendall(struct.pack("!I", len(payload)) + payload[:5])
    else:
        mask = b"\x01\x02\x03\x04"
        victim.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask
                            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload[:5])))
    victim.sock.shutdown(socket.SHUT_WR)
    assert expect_closed_without_data(victim.sock) == b"", "the router answered a cut frame"
    event = watcher.recv()
    assert event[0] == EVENT and event[4] == [kind], event
    logged(router, "WAMP session closed")
    still_serves(router)


def test_rawsocket_frame_truncated_then_eof_ends_the_session_abnormally(router):
    _cut_mid_frame(router, "rawsocket")


def test_websocket_cut_mid_frame_ends_the_session_abnormally(router):
    _cut_mid_frame(router, "websocket")


def test_rawsocket_frame_truncated_then_silence_is_waited_for(router_factory):
    """No idle timeout on an established session: not even the handshake timeout closes it;
    the rest of the frame, however late, is read and answered."""
    router = router_factory("[limits]\nhandshake_timeout_ms = 500\n")
    c = raw_wamp(router)
    c.join()
    payload = encode("json", [CALL, 5, {}, "wamp.session.count"])
    c.sock.sendall(struct.pack("!I", len(payload)) + payload[:5])
    c.sock.settimeout(1.5)
    with pytest.raises(socket.timeout):
        c.sock.recv(100)
    c.sock.settimeout(5)
    c.sock.sendall(payload[5:])
    assert c.recv()[:2] == [RESULT, 5]
    still_serves(router)


def _ws_frame(first, payload, masked=True):
    mask = b"\x05\x06\x07\x08"
    if not masked:
        return bytes([first, len(payload)]) + payload
    return bytes([first, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_rawsocket_reserved_frame_header_bits_are_abort(router):
    c = raw_wamp(router)
    c.join()
    payload = encode("json", [CALL, 1, {}, "wamp.session.count"])
    c.sock.sendall(struct.pack("!I", (0x08 << 24) | len(payload)) + payload)
    expect_abort(c, message="reserved frame header bits")
    logged(router, "protocol violation on the transport")
    still_serves(router)


@pytest.mark.parametrize("violation", ["unmasked", "opcode-3", "rsv1"])
def test_websocket_protocol_violation_is_abort(router, violation):
    c = ws_wamp(router)
    c.join()
    payload = encode("json", [CALL, 1, {}, "wamp.session.count"])
    frame = {"unmasked": _ws_frame(0x81, payload, masked=False),
             "opcode-3": _ws_frame(0x83, payload),
             "rsv1": _ws_frame(0xC1, payload)}[violation]
    c.sock.sendall(frame)
    expect_abort(c, message="WebSocket protocol violation")
    logged(router, "protocol violation on the transport")
    still_serves(router)


# ---------------------------------------------------------------------------------------
# URIs and wildcards where forbidden

def test_empty_components_in_pattern_uris_and_the_empty_prefix_are_accepted(router):
    c = raw_wamp(router)
    c.join()
    c.send([SUBSCRIBE, 1, {"match": "wildcard"}, "com..x"])
    assert c.recv()[:2] == [SUBSCRIBED, 1]
    c.send([SUBSCRIBE, 2, {"match": "prefix"}, ""])
    everything = c.recv()
    assert everything[:2] == [SUBSCRIBED, 2]
    c.send([REGISTER, 3, {"match": "wildcard"}, "com..add"])
    assert c.recv()[:2] == [REGISTERED, 3]
    c.send([REGISTER, 4, {"match": "prefix"}, "com.pre."])
    assert c.recv()[:2] == [REGISTERED, 4]
    # The "" prefix subscription gets every topic.
    publisher = raw_wamp(router)
    publisher.join()
    publisher.send([PUBLISH, 5, {"acknowledge": True}, "org.any.topic", ["hi"]])
    assert publisher.recv()[:2] == [PUBLISHED, 5]
    event = c.recv()
    assert event[0] == EVENT and event[1] == everything[2] and event[4] == ["hi"], event
    still_serves(router)


@pytest.mark.parametrize("realm", ["bad realm", "a..b", "#realm"])
def test_hello_with_an_invalid_realm_uri_is_abort_invalid_uri(router, realm):
    c = raw_wamp(router)
    c.send([HELLO, realm, HELLO_ROLES])
    expect_abort(c, "wamp.error.invalid_uri")
    still_serves(router)


def test_publish_to_and_register_of_wamp_uris_are_not_authorized(router):
    c = raw_wamp(router)
    c.join()
    c.send([PUBLISH, 1, {"acknowledge": True}, "wamp.session.on_join", [1]])
    assert c.recv()[:5] == [ERROR, PUBLISH, 1, {}, "wamp.error.not_authorized"]
    c.send([REGISTER, 2, {}, "wamp.my.procedure"])
    assert c.recv()[:5] == [ERROR, REGISTER, 2, {}, "wamp.error.not_authorized"]
    still_serves(router)


def test_mqtt_will_topic_with_a_wildcard_is_refused(router):
    raw = Raw(router)
    raw.send(connect_packet(new_id(), version=5, will=("will/+/x", b"w", 0, False)))
    _, _, ack = raw.expect(CONNACK)
    assert ack[1] == 0x90
    assert raw.closed() == []
    raw = Raw(router)
    raw.send(connect_packet(new_id(), version=4, will=("will/#", b"w", 0, False)))
    assert raw.closed() == [], "3.1.1 has no code for it: a plain close"
    logged(router, "bad MQTT CONNECT")
    still_serves(router)


INVALID_FILTERS = ["a/#/b", "a+", "", "$share/g", "$share//x", "$share/g+/x"]


@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe"])
@pytest.mark.parametrize("topic_filter", INVALID_FILTERS)
def test_mqtt_invalid_filter_ends_the_connection(router, kind, topic_filter):
    for version in (5, 4):
        raw = mqtt_connected(router, version)
        props = b"\x00" if version == 5 else b""
        if kind == "subscribe":
            raw.send(packet(0x82, struct.pack("!H", 1) + props + s(topic_filter) + b"\x01"))
        else:
            raw.send(packet(0xA2, struct.pack("!H", 1) + props + s(topic_filter)))
        if version == 5:
            assert v5_disconnect_reason(raw) == 0x8F
        else:
            assert raw.closed() == [], "3.1.1: a plain close, no SUBACK"
    logged(router, "MQTT protocol violation")
    still_serves(router)


# ---------------------------------------------------------------------------------------
# Invalid UTF-8

def _connect_with_strings(version, client_id=b"ok", username=None):
    flags = 0x02 | (0x80 if username is not None else 0)
    body = s("MQTT") + bytes([version, flags]) + struct.pack("!H", 60)
    if version == 5:
        body += b"\x00"
    body += s(client_id)
    if username is not None:
        body += s(username)
    return packet(0x10, body)


@pytest.mark.parametrize("field", ["client-id-nul", "client-id-utf8", "username-utf8", "username-nul"])
def test_mqtt_invalid_strings_in_connect(router, field):
    value = b"a\x00b" if field.endswith("nul") else b"a\xff\xfe"
    for version in (5, 4):
        raw = Raw(router)
        if field.startswith("client-id"):
            raw.send(_connect_with_strings(version, client_id=value))
        else:
            raw.send(_connect_with_strings(version, username=value))
        if version == 5:
            _, _, ack = raw.expect(CONNACK)
            assert ack[1] == 0x81
            assert raw.closed() == []
        else:
            assert raw.closed() == [], "3.1.1: a plain close"
    logged(router, "bad MQTT CONNECT")
    still_serves(router)


@pytest.mark.parametrize("value", [b"text/\x00", b"text/\xc0"], ids=["nul", "invalid-utf8"])
def test_mqtt_invalid_string_in_a_property_after_connect_is_disconnect_0x81(router, value):
    raw = mqtt_connected(router, 5)
    content_type = (0x03, s(value))
    raw.send(publish_packet("utf/x", b"p", version=5, properties=v5_properties(content_type)))
    assert v5_disconnect_reason(raw) == 0x81
    still_serves(router)


def test_mqtt_over_websocket_text_frame_closes_without_disconnect(router):
    c = ws_mqtt(router)
    c.send_frame(connect_packet(new_id(), version=5), opcode=2)
    opcode, data = c.recv_frame()
    assert opcode == 2 and data[0] >> 4 == CONNACK and data[3] == 0, data.hex()
    c.send_frame(publish_packet("ws/text", b"x", version=5), opcode=1)
    frames = []
    try:
        while True:
            opcode, data = c.recv_frame()
            frames.append(opcode)
            if opcode == 8:
                break
    except Closed:
        pass
    assert 2 not in frames, f"no DISCONNECT (binary frame) expected, got opcodes {frames}"
    assert c.is_closed(2.0)
    still_serves(router)


# ---------------------------------------------------------------------------------------
# Oversized messages

SMALL_LIMIT = "[limits]\nmessage_size_max_bytes = 512\n"
# tungstenite's limit with SMALL_LIMIT: the MQTT packet max, 512 B + 64 KiB.
WS_LIMIT_BYTES = 512 + 64 * 1024


def _ws_big_frame(opcode, size):
    mask = b"\x00\x00\x00\x00"  # a zero mask leaves the payload as it is
    return bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", size) + mask + b"x" * size


def test_websocket_frame_over_the_transport_limit(router_factory):
    router = router_factory(SMALL_LIMIT)
    c = ws_wamp(router)
    c.join()
    c.sock.sendall(_ws_big_frame(1, WS_LIMIT_BYTES + 1000))
    expect_abort(c, message="message too large")
    # MQTT over WebSocket: closed, no DISCONNECT.
    m = ws_mqtt(router)
    m.send_frame(connect_packet(new_id(), version=5), opcode=2)
    opcode, data = m.recv_frame()
    assert opcode == 2 and data[0] >> 4 == CONNACK, data.hex()
    m.sock.sendall(_ws_big_frame(2, WS_LIMIT_BYTES + 1000))
    frames = []
    try:
        while True:
            opcode, data = m.recv_frame()
            frames.append((opcode, data[:4]))
            if opcode == 8:
                break
    except (Closed, ConnectionResetError):
        pass
    assert all(op != 2 for op, _ in frames), f"no DISCONNECT expected, got {frames}"
    still_serves(router)


def test_outbound_message_over_the_rawsocket_peers_max_closes_that_connection(router):
    """A subscriber announcing 2^10 bytes gets a 2 kB event: its connection is closed;
    the publisher gets no ERROR (its PUBLISHED as usual). At the smallest size a peer may
    announce, 2^9, the full WELCOME (about 730 bytes) is too large: that peer gets one
    without the roles' feature lists (optional in the spec), joins and subscribes, and is
    closed only by a message over its limit."""
    tiny = raw_wamp(router, length_exp=0)
    tiny.send([HELLO, "realm1", HELLO_ROLES])
    welcome = tiny.recv()
    assert welcome[0] == WELCOME, welcome
    assert welcome[2]["roles"] == {"broker": {}, "dealer": {}}, welcome
    assert welcome[2]["realm"] == "realm1" and welcome[2]["authrole"], welcome
    tiny.send([SUBSCRIBE, 1, {}, "com.test.big"])
    assert tiny.recv()[:2] == [SUBSCRIBED, 1]
    small = raw_wamp(router, length_exp=1)
    small.join()
    small.send([SUBSCRIBE, 1, {}, "com.test.big"])
    assert small.recv()[:2] == [SUBSCRIBED, 1]
    publisher = raw_wamp(router)
    publisher.join()
    publisher.send([PUBLISH, 2, {"acknowledge": True}, "com.test.big", ["x" * 2000]])
    assert publisher.recv()[:2] == [PUBLISHED, 2]
    assert small.is_closed(5.0), "the connection of the small peer stays open"
    assert tiny.is_closed(5.0), "the connection of the tiny peer stays open"
    publisher.send([CALL, 3, {}, "wamp.session.count"])
    assert publisher.recv()[:2] == [RESULT, 3], "no ERROR for the publisher"
    still_serves(router)


def _connect_header(version, remaining):
    """The start of a CONNECT declaring `remaining` bytes: fixed header, protocol name and
    level."""
    return b"\x10" + varint(remaining) + s("MQTT") + bytes([version])


def test_mqtt_connect_over_the_packet_max(router_factory):
    router = router_factory(SMALL_LIMIT)
    too_big = WS_LIMIT_BYTES + 1
    raw = Raw(router)
    raw.send(_connect_header(5, too_big))
    _, _, ack = raw.expect(CONNACK)
    assert ack[1] == 0x95, "level byte read: CONNACK 0x95"
    assert raw.closed() == []
    raw = Raw(router)
    raw.send(_connect_header(4, too_big))
    assert raw.closed() == [], "3.1.1 has no code for it: a plain close"
    raw = Raw(router)
    raw.send(b"\x10" + varint(too_big))
    assert raw.closed() == [], "level unknown: a plain close"
    logged(router, "bad MQTT CONNECT")
    still_serves(router)


# ---------------------------------------------------------------------------------------
# Handshakes

def test_rawsocket_reserved_handshake_bytes_get_error_3(router):
    c = RawSocketClient(router.rawsocket, "json")
    c.sock.sendall(bytes([0x7F, 0xF1, 0x00, 0x01]))
    assert expect_closed_without_data(c.sock) == bytes([0x7F, 0x30, 0, 0])
    logged(router, "RawSocket handshake refused")
    still_serves(router)


def test_rawsocket_serializer_0_gets_error_1(router):
    c = RawSocketClient(router.rawsocket, "json")
    c.sock.sendall(bytes([0x7F, 0xF0, 0x00, 0x00]))
    assert expect_closed_without_data(c.sock) == bytes([0x7F, 0x10, 0, 0])
    still_serves(router)


@pytest.mark.parametrize("protocols", [(), ("wamp.2.json",), ("mqttv5",)], ids=["none", "wamp", "mqttv5"])
def test_mqtt_websocket_path_without_the_mqtt_subprotocol_is_http_400(router, protocols):
    c = WebSocketClient(router.addr["ws"], path="/mqtt", protocols=protocols)
    assert " 400 " in c.status_line + " ", c.status_line
    still_serves(router)


def test_plain_http_without_upgrade_headers_is_closed_without_a_status(router_factory):
    router = router_factory("", ["--log", "info,fox_router::wamp::ws=debug"])
    sock = socket.create_connection(router.addr["ws"], timeout=5)
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert expect_closed_without_data(sock) == b"", "no HTTP status expected"
    logged(router, "WebSocket handshake failed")
    still_serves(router)


@pytest.mark.parametrize("version", [3, 4])
def test_mqtt_malformed_connect_3x_is_closed(router, version):
    name = "MQIsdp" if version == 3 else "MQTT"
    # The user name flag set, and no user name after the client ID: malformed.
    raw = Raw(router)
    raw.send(packet(0x10, s(name) + bytes([version, 0x82]) + struct.pack("!H", 60) + s("x")))
    assert raw.closed() == [], "no CONNACK: 3.x has no code for a malformed packet"
    logged(router, "bad MQTT CONNECT")
    # The reserved flag bit is a rule of 3.1.1 (MQTT-3.1.2-3), not of 3.1.
    raw = Raw(router)
    raw.send(packet(0x10, s(name) + bytes([version, 0x03]) + struct.pack("!H", 60) + s(new_id())))
    if version == 3:
        assert raw.expect(CONNACK)[2] == b"\x00\x00"
        raw.close()
    else:
        assert raw.closed() == []
    still_serves(router)


def test_mqtt5_connect_with_an_authentication_method_is_0x8c(router):
    raw = Raw(router)
    raw.send(connect_packet(new_id(), version=5, properties=v5_properties((0x15, s("SCRAM-SHA-1")))))
    _, _, ack = raw.expect(CONNACK)
    assert ack[1] == 0x8C
    assert raw.closed() == []
    still_serves(router)


# ---------------------------------------------------------------------------------------
# MQTT protocol violations after CONNECT

def test_mqtt_auth_packet(router):
    raw = mqtt_connected(router, 5)
    raw.send(b"\xF0\x00")
    assert v5_disconnect_reason(raw) == 0x82
    raw = mqtt_connected(router, 4)
    raw.send(b"\xF0\x00")
    assert raw.closed() == []
    logged(router, "MQTT protocol violation")
    still_serves(router)


SERVER_PACKETS = {
    "connack": {5: b"\x20\x03\x00\x00\x00", 4: b"\x20\x02\x00\x00"},
    "suback": {5: b"\x90\x04\x00\x01\x00\x00", 4: b"\x90\x03\x00\x01\x00"},
    "unsuback": {5: b"\xB0\x04\x00\x01\x00\x00", 4: b"\xB0\x02\x00\x01"},
    "pingresp": {5: b"\xD0\x00", 4: b"\xD0\x00"},
}


@pytest.mark.parametrize("name", list(SERVER_PACKETS))
def test_mqtt_server_packets_from_a_client(router, name):
    raw = mqtt_connected(router, 5)
    raw.send(SERVER_PACKETS[name][5])
    assert v5_disconnect_reason(raw) == 0x82
    raw = mqtt_connected(router, 4)
    raw.send(SERVER_PACKETS[name][4])
    assert raw.closed() == []
    still_serves(router)


def test_mqtt_receive_maximum_exceeded_closes_a_3_1_1_connection(router_factory):
    router = router_factory("[limits]\nmqtt_receive_max = 2\n")
    raw = mqtt_connected(router, 4)
    for pid in (1, 2, 3):
        raw.send(publish_packet("rm/x", b"x", qos=2, packet_id=pid))
    assert [p[0] for p in raw.closed()] == [PUBREC, PUBREC]
    logged(router, "MQTT protocol violation")
    still_serves(router)


def test_mqtt_pubrel_for_an_unknown_packet_id(router):
    raw = mqtt_connected(router, 5)
    raw.send(packet(0x62, struct.pack("!H", 77)))
    _, _, body = raw.expect(PUBCOMP)
    assert body[:3] == struct.pack("!H", 77) + b"\x92"
    raw = mqtt_connected(router, 4)
    raw.send(packet(0x62, struct.pack("!H", 78)))
    _, _, body = raw.expect(PUBCOMP)
    assert body == struct.pack("!H", 78)
    still_serves(router)


def test_mqtt_pubrec_for_an_unknown_packet_id(router):
    raw = mqtt_connected(router, 5)
    raw.send(packet(0x50, struct.pack("!H", 77)))
    _, flags, body = raw.expect(PUBREL)
    assert flags == 2 and body[:3] == struct.pack("!H", 77) + b"\x92"
    raw = mqtt_connected(router, 4)
    raw.send(packet(0x50, struct.pack("!H", 78)))
    _, _, body = raw.expect(PUBREL)
    assert body == struct.pack("!H", 78)
    still_serves(router)


@pytest.mark.parametrize("version", [5, 4])
def test_mqtt_puback_and_pubcomp_for_unknown_packet_ids_are_ignored(router, version):
    raw = mqtt_connected(router, version)
    raw.send(packet(0x40, struct.pack("!H", 91)))
    raw.send(packet(0x70, struct.pack("!H", 92)))
    raw.send(b"\xC0\x00")  # PINGREQ: the next packet must be its PINGRESP
    assert raw.expect(PINGRESP)
    raw.send(publish_packet("ign/x", b"x", qos=1, packet_id=5, version=version))
    assert raw.expect(PUBACK)[2][:2] == struct.pack("!H", 5)
    still_serves(router)


@pytest.mark.parametrize("version", [5, 4])
def test_mqtt_packet_truncated_then_eof_publishes_the_will(router, version):
    watcher = Client(router, new_id(), 5)
    watcher.connect()
    topic = f"trunc/{version}"
    watcher.subscribe(topic, qos=1)
    raw = Raw(router)
    raw.send(connect_packet(new_id(), version=version, will=(topic, b"cut off", 1, False)))
    raw.expect(CONNACK)
    raw.send(publish_packet("trunc/data", b"x" * 100, version=version)[:20])
    raw.sock.shutdown(socket.SHUT_WR)
    assert raw.closed() == [], "no answer to a truncated packet"
    assert watcher.get().payload == b"cut off"
    watcher.disconnect()
    still_serves(router)


# ---------------------------------------------------------------------------------------
# Authentication and realms

def test_mqtt_user_at_an_unknown_realm_is_not_authorized(router_factory):
    router = router_factory('[router]\nauto_create_realms = false\nrealms = ["realm1"]\n')
    for version, code in ((5, 0x87), (4, 0x05)):
        raw = Raw(router)
        raw.send(_connect_with_strings(version, client_id=new_id().encode(), username=b"fox@nosuch"))
        _, _, ack = raw.expect(CONNACK)
        assert ack[1] == code, (version, ack)
        assert raw.closed() == []
    raw = Raw(router)
    raw.send(_connect_with_strings(5, client_id=new_id().encode(), username=b"fox@realm1"))
    assert raw.expect(CONNACK)[2][1] == 0
    still_serves(router)


WILL_ROLE = """
[[role]]
name = "anonymous"
permissions = [ { uri = "", match = "prefix", publish = true, subscribe = true, call = true, register = true } ]
deny = [ { uri = "secret.", match = "prefix", publish = true } ]
"""


def test_mqtt_will_on_a_topic_the_role_may_not_publish(router_factory):
    router = router_factory(WILL_ROLE)
    for version, code in ((5, 0x87), (4, 0x05)):
        raw = Raw(router)
        raw.send(connect_packet(new_id(), version=version, will=("secret/will", b"w", 0, False)))
        _, _, ack = raw.expect(CONNACK)
        assert ack[1] == code, (version, ack)
        assert raw.closed() == []
        allowed = mqtt_connected(router, version, will=("open/will", b"w", 0, False))
        allowed.close()
    still_serves(router)


# ---------------------------------------------------------------------------------------
# Slow and greedy clients

def test_calls_queued_past_the_maximum_are_canceled(router_factory):
    """QUEUED_CALLS_MAX = 10,000 per registration: a callee with concurrency 1 holds one
    invocation, 10,000 calls queue, the next is refused."""
    router = router_factory("[limits]\ncalls_in_flight_per_session_max = 20000\n")
    callee = raw_wamp(router)
    callee.join()
    callee.send([REGISTER, 1, {"concurrency": 1}, "com.test.busy"])
    assert callee.recv()[:2] == [REGISTERED, 1]
    caller = raw_wamp(router)
    caller.join()
    frames = b"".join(struct.pack("!I", len(p)) + p for p in
                      (encode("json", [CALL, n, {}, "com.test.busy"]) for n in range(1, 10_003)))
    caller.sock.sendall(frames)
    assert callee.recv()[0] == INVOCATION
    reply = caller.recv()
    assert reply[:5] == [ERROR, CALL, 10_002, {}, "wamp.error.canceled"], reply
    assert "too many calls queued" in " ".join(str(a) for a in reply[5:]), reply
    still_serves(router)


def test_call_timeout_above_the_maximum_is_capped(router_factory):
    router = router_factory("[limits]\ncall_timeout_max_ms = 400\n")
    callee = raw_wamp(router)
    callee.join()
    callee.send([REGISTER, 1, {}, "com.test.slow"])
    assert callee.recv()[:2] == [REGISTERED, 1]
    caller = raw_wamp(router)
    caller.join()
    started = time.monotonic()
    caller.send([CALL, 2, {"timeout": 60_000}, "com.test.slow"])
    invocation = callee.recv()
    assert invocation[0] == INVOCATION and invocation[3].get("timeout") == 400, invocation
    reply = caller.recv()
    assert reply[:5] == [ERROR, CALL, 2, {}, "wamp.error.timeout"], reply
    assert time.monotonic() - started < 3.0
    still_serves(router)


# ---------------------------------------------------------------------------------------
# TLS

from test_tls import Ca, client_context, mqtt_connects, pki, tls_router  # noqa: E402,F401 (pki: a fixture)


@pytest.mark.parametrize("gate", ["mqtts", "wss", "rawsockets"])
def test_slowloris_on_a_tls_listener_is_closed_at_the_handshake_timeout(router_factory, pki, gate):
    router = tls_router(router_factory, pki, "[limits]\nhandshake_timeout_ms = 500\n")
    sock = socket.create_connection(router.addr[gate], timeout=5)
    started = time.monotonic()
    sock.sendall(b"\x16")  # the first byte of a ClientHello, then nothing
    assert expect_closed_without_data(sock) == b""
    assert time.monotonic() - started < 3.0
    logged(router, "TLS handshake timed out")
    still_serves(router)


def test_each_handshake_phase_has_its_own_deadline(router_factory, pki):
    """handshake_timeout_ms = 1500: a client that takes 0.9 s in each phase (TLS, WebSocket
    upgrade, HELLO over wss; the 4 bytes, HELLO over RawSocket) still joins, after
    more than the timeout in all."""
    router = tls_router(router_factory, pki, "[limits]\nhandshake_timeout_ms = 1500\n")
    phase = 0.9
    started = time.monotonic()
    raw = RawSocketClient(router.rawsocket, "json")
    time.sleep(phase)
    assert raw.handshake()[0] == 0x7F
    time.sleep(phase)
    raw.join()
    assert time.monotonic() - started > 1.5
    started = time.monotonic()
    plain = socket.create_connection(router.addr["wss"], timeout=5)
    time.sleep(phase)
    tls = client_context(pki).wrap_socket(plain, server_hostname="localhost")
    time.sleep(phase)
    tls.sendall((f"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: wamp.2.json\r\n\r\n").encode())
    ws = _upgraded(tls, "wamp.2.json")
    time.sleep(phase)
    ws.join()
    assert time.monotonic() - started > 1.5, "more than one timeout in all"
    still_serves(router)


@pytest.mark.parametrize("gate", ["wss", "rawsockets"])
def test_plain_text_on_a_tls_port_is_refused_and_logged(router_factory, pki, gate):
    router = tls_router(router_factory, pki)
    sock = socket.create_connection(router.addr[gate], timeout=5)
    if gate == "wss":
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
    else:
        sock.sendall(bytes([0x7F, 0xF1, 0, 0]))
    data = expect_closed_without_data(sock)
    assert not data.startswith(b"HTTP/") and not data.startswith(b"\x7f"), data[:16]
    logged(router, "TLS handshake failed")
    still_serves(router)


def test_an_optional_client_certificate_of_another_ca_is_refused(router_factory, pki, tmp_path):
    router = tls_router(router_factory, pki, f'client_ca = "{pki.pem}"\nclient_cert = "optional"\n')
    other = Ca(tmp_path, "other").issue("device-7", server=False)
    assert not mqtt_connects(router.addr["mqtts"], client_context(pki, cert=other))
    assert mqtt_connects(router.addr["mqtts"], client_context(pki, cert=pki.issue("ok", server=False)))
    assert mqtt_connects(router.addr["mqtts"], client_context(pki))
    logged(router, "TLS handshake failed")
    still_serves(router)


# ---------------------------------------------------------------------------------------
# Cluster port (node to node)

@pytest.fixture
def lone_ndb_node():
    """One ndb node of a `cluster init` cluster, alone (its peers never start): its peer
    address from the cluster file."""
    from cluster_nodes import Cluster
    cluster = Cluster()
    try:
        node = cluster.nodes[4]
        node.start().wait_listening()
        layout = tomllib.loads(cluster.file.read_text())
        entry = next(n for n in layout["node"] if n["id"] == 4)
        host, port = entry["peer"].rsplit(":", 1)
        node.peer = (host, int(port))
        yield node
    finally:
        cluster.close()


def test_a_silent_cluster_peer_is_closed_at_the_handshake_timeout(lone_ndb_node):
    sock = socket.create_connection(lone_ndb_node.peer, timeout=10)
    started = time.monotonic()
    assert expect_closed_without_data(sock, timeout=10) == b""
    elapsed = time.monotonic() - started
    assert 2.5 < elapsed < 6.0, f"closed after {elapsed:.1f} s, 3 s expected"
    assert lone_ndb_node.proc.poll() is None


def test_cluster_connections_past_inbound_connections_max_are_refused(lone_ndb_node):
    held = [socket.create_connection(lone_ndb_node.peer, timeout=5) for _ in range(256)]
    try:
        extra = socket.create_connection(lone_ndb_node.peer, timeout=5)
        started = time.monotonic()
        assert expect_closed_without_data(extra, timeout=5) == b""
        assert time.monotonic() - started < 2.0, "refused at once, not at the handshake timeout"
        poll_until(lambda: "too many connections" in lone_ndb_node.log_path.read_text(), 5,
                   "the refusal is logged")
    finally:
        for sock in held:
            sock.close()
    assert lone_ndb_node.proc.poll() is None


def test_a_non_event_finding_the_queue_full_gets_goodbye_slow_consumer(router_factory):
    """session_queue_max = 1 and a burst of calls: the second INVOCATION finds the callee's
    queue full while the callee still reads, so the GOODBYE reaches it (a callee that
    stopped reading is closed without one: its writer is blocked)."""
    router = router_factory("[limits]\nsession_queue_max = 1\n")
    callee = raw_wamp(router)
    callee.join()
    callee.send([REGISTER, 1, {}, "com.test.burst"])
    assert callee.recv()[:2] == [REGISTERED, 1]
    caller = raw_wamp(router)
    caller.join()
    caller.sock.sendall(b"".join(struct.pack("!I", len(p)) + p for p in
                                 (encode("json", [CALL, n, {}, "com.test.burst"]) for n in range(1, 21))))
    seen = []
    while True:
        msg = callee.recv()
        seen.append(msg[0])
        if msg[0] == GOODBYE:
            break
        assert msg[0] == INVOCATION, msg
    assert msg[2] == "wamp.close.slow_consumer", msg
    assert msg[1].get("message") == "outbound queue full", msg
    callee.send([GOODBYE, {}, "wamp.close.goodbye_and_out"])
    assert callee.is_closed(2.0)
    errors = [caller.recv() for _ in range(20)]  # the invoked ones too: the callee left
    assert all(e[0] == ERROR and e[4] in ("wamp.error.canceled", "wamp.error.no_such_procedure")
               for e in errors), errors
    still_serves(router)
