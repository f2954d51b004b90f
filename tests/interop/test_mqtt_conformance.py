"""MQTT conformance of issue 12, each point checked with a third-party client (paho-mqtt)
or a raw socket: user properties passed on unaltered (the permanent ID `fox-id` only on
request), one copy for overlapping subscriptions, a DISCONNECT the client can read while
it is still sending (TCP and WebSocket), Server Keep Alive, and the payload limit."""

import base64
import os
import queue
import socket
import struct
import time

import pytest
from paho.mqtt.packettypes import PacketTypes

from mqtt_client import Client, Raw, connect_packet, new_id, props, publish_packet

FOX_ID = ("fox-id", "true")
# What the router adds to the payload limit for a packet (`PACKET_HEADROOM_BYTES`).
HEADROOM_BYTES = 64 * 1024
# How long a client goes on writing after it broke a rule, before it reads.
WRITING_SECS = 0.3


def pub_props(**fields):
    return props(PacketTypes.PUBLISH, **fields)


def sub_props(**fields):
    return props(PacketTypes.SUBSCRIBE, **fields)


def user_properties(message):
    return list(getattr(message.properties, "UserProperty", []))


def identifiers(message):
    return sorted(getattr(message.properties, "SubscriptionIdentifier", []))


def connected(router, version=5, **kwargs):
    c = Client(router, new_id(), version)
    c.connect(**kwargs)
    return c


# ---------------------------------------------------------------------------------------
# User properties unaltered; the permanent ID on request.

def test_user_properties_are_passed_on_unaltered(router):
    sub = connected(router)
    sub.subscribe("up/x", qos=1)
    pub = connected(router)
    pub.publish("up/x", b"a", qos=1, properties=pub_props(UserProperty=[("k", "v"), ("k", "w")]))
    assert user_properties(sub.get()) == [("k", "v"), ("k", "w")]
    pub.publish("up/x", b"b", qos=1)
    assert user_properties(sub.get()) == []


def test_fox_id_when_a_subscribe_asks_for_it(router):
    sub = connected(router)
    sub.subscribe("fs/x", qos=1, properties=sub_props(UserProperty=[FOX_ID]))
    sub.subscribe("fs/y", qos=1)
    pub = connected(router)
    pub.publish("fs/x", b"1", qos=1, properties=pub_props(UserProperty=[("k", "v")]))
    users = user_properties(sub.get())
    assert users[0] == ("k", "v"), "the publisher's properties first, unaltered"
    assert [k for k, _ in users[1:]] == ["fox-id"]
    assert 1 <= int(users[1][1]) <= 2**53
    pub.publish("fs/y", b"2", qos=1)
    assert user_properties(sub.get()) == [], "only the subscription that asked"


def test_fox_id_when_connect_asks_for_it(router):
    sub = connected(router, properties=props(UserProperty=[FOX_ID]))
    sub.subscribe("fc/x", qos=0)
    pub = connected(router)
    pub.publish("fc/x", b"1", qos=1)
    first = dict(user_properties(sub.get()))["fox-id"]
    pub.publish("fc/x", b"2", qos=1)
    second = dict(user_properties(sub.get()))["fox-id"]
    assert int(first) < int(second)


def test_fox_id_switched_on_for_one_listener(router_factory):
    router = router_factory("[listen]\nmqtt_fox_id = true\n")
    tcp = connected(router)
    tcp.subscribe("fl/x", qos=1)
    ws = Client(router, new_id(), 5, transport="ws")
    ws.connect()
    ws.subscribe("fl/x", qos=1)
    pub = connected(router)
    pub.publish("fl/x", b"1", qos=1)
    assert [k for k, _ in user_properties(tcp.get())] == ["fox-id"]
    assert user_properties(ws.get()) == [], "the WebSocket listener has it off"


def test_fox_id_left_out_of_a_message_it_would_make_too_large(router):
    # A QoS 1 PUBLISH to fit/x with no properties and a 100-byte payload is 112 bytes:
    # 1 + 1 (fixed header) + 2 + 5 (topic) + 2 (packet id) + 1 (no properties) + 100.
    sub = connected(router, properties=props(MaximumPacketSize=112, UserProperty=[FOX_ID]))
    sub.subscribe("fit/x", qos=1)
    pub = connected(router)
    pub.publish("fit/x", b"x" * 100, qos=1)
    first = sub.get()
    assert first.payload == b"x" * 100, "sent, without the ID"
    assert user_properties(first) == []
    pub.publish("fit/x", b"small", qos=1)
    assert [k for k, _ in user_properties(sub.get())] == ["fox-id"]


# ---------------------------------------------------------------------------------------
# Overlapping subscriptions: one copy.

def test_overlapping_subscriptions_send_one_copy_with_every_identifier(router):
    sub = connected(router)
    sub.subscribe("ov/+", qos=0, properties=sub_props(SubscriptionIdentifier=7))
    sub.subscribe("ov/#", qos=2, properties=sub_props(SubscriptionIdentifier=9))
    sub.subscribe("ov/x", qos=1)
    pub = connected(router)
    pub.publish("ov/x", b"x", qos=2)
    m = sub.get()
    assert m.qos == 2, "the highest granted QoS"
    assert identifiers(m) == [7, 9]
    sub.expect_none()
    pub.publish("ov/y", b"y", qos=1)
    m = sub.get()
    assert (m.payload, m.qos, identifiers(m)) == (b"y", 1, [7, 9])
    sub.expect_none()


def test_overlapping_subscriptions_send_one_copy_in_3_1_1(router):
    sub = connected(router, version=4)
    sub.subscribe("ov3/+", qos=0)
    sub.subscribe("ov3/#", qos=1)
    pub = connected(router, version=4)
    pub.publish("ov3/x", b"x", qos=1)
    assert sub.get().qos == 1
    sub.expect_none()


def test_shared_subscription_stays_a_delivery_of_its_own(router):
    sub = connected(router)
    sub.subscribe("$share/g/sh/+", qos=1, properties=sub_props(SubscriptionIdentifier=3))
    sub.subscribe("sh/x", qos=1, properties=sub_props(SubscriptionIdentifier=4))
    pub = connected(router)
    pub.publish("sh/x", b"x", qos=1)
    got = sorted(identifiers(sub.get()) + identifiers(sub.get()))
    assert got == [3, 4]
    sub.expect_none()


def test_overlapping_retain_as_published_keeps_the_flag(router):
    sub = connected(router)
    sub.subscribe("rc/#", qos=1, retainAsPublished=True, retainHandling=2)
    sub.subscribe("rc/x", qos=1, retainHandling=2)
    pub = connected(router)
    pub.publish("rc/x", b"kept", qos=1, retain=True)
    assert sub.get().retain is True
    sub.expect_none()
    pub.publish("rc/x", b"", qos=1, retain=True)


def test_overlapping_no_local_leaves_the_other_subscriptions(router):
    sub = connected(router)
    sub.subscribe("nlc/#", qos=1, noLocal=True, properties=sub_props(SubscriptionIdentifier=1))
    sub.subscribe("nlc/x", qos=1, properties=sub_props(SubscriptionIdentifier=2))
    sub.publish("nlc/x", b"mine", qos=1)
    m = sub.get()
    assert (m.payload, identifiers(m)) == (b"mine", [2])
    sub.expect_none()
    pub = connected(router)
    pub.publish("nlc/x", b"theirs", qos=1)
    m = sub.get()
    assert (m.payload, identifiers(m)) == (b"theirs", [1, 2])
    sub.expect_none()


# ---------------------------------------------------------------------------------------
# The DISCONNECT reaches a client that is still sending.

PINGREQS = b"\xc0\x00" * 512


def keep_writing(sock, first, more=PINGREQS):
    """Sends `first`, then `more` (PINGREQs) again and again for a while, before reading
    anything: a client busy sending. A reset connection raises here (EPIPE, ECONNRESET)."""
    sock.sendall(first)
    deadline = time.monotonic() + WRITING_SECS
    while time.monotonic() < deadline:
        sock.sendall(more)
        time.sleep(0.01)


def test_packet_too_large_while_the_client_keeps_writing(router):
    raw = Raw(router)
    raw.send(connect_packet(new_id(), version=5))
    raw.expect(2)
    keep_writing(raw.sock, publish_packet("big", b"x" * (2 << 20), version=5))
    p = raw.expect(14)
    assert p[2][0] == 0x95
    assert raw.closed() == []


def test_receive_maximum_exceeded_while_the_client_keeps_writing(router_factory):
    router = router_factory("[limits]\nmqtt_receive_max = 2\n")
    raw = Raw(router)
    raw.send(connect_packet(new_id(), version=5))
    raw.expect(2)
    three = b"".join(publish_packet("rmw/x", b"x", qos=2, packet_id=pid, version=5) for pid in (1, 2, 3))
    keep_writing(raw.sock, three)
    raw.expect(5)
    raw.expect(5)
    p = raw.expect(14)
    assert p[2][0] == 0x93
    assert raw.closed() == []


class RawWebSocket:
    """MQTT over a raw WebSocket (RFC 6455, client frames masked): send bytes as binary
    frames, read the server's frames."""

    def __init__(self, router, timeout=5.0):
        host, port = router.addr["ws"]
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /mqtt HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, "closed during the WebSocket handshake"
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    @staticmethod
    def frame(data, opcode=0x2):
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            header = bytes([0x80 | opcode, 0x80 | n])
        elif n < 1 << 16:
            header = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", n)
        else:
            header = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return header + mask + masked

    def frames(self, data, size=16 * 1024):
        return b"".join(self.frame(data[i:i + size]) for i in range(0, len(data), size))

    def read_frame(self, timeout=5.0):
        """(opcode, payload), or None once the connection is closed."""
        deadline = time.monotonic() + timeout
        while True:
            parsed = self._parse()
            if parsed:
                return parsed
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame before the deadline")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buf += chunk

    def _parse(self):
        if len(self.buf) < 2:
            return None
        opcode, n, at = self.buf[0] & 0x0F, self.buf[1] & 0x7F, 2
        if n == 126:
            if len(self.buf) < 4:
                return None
            n, at = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            if len(self.buf) < 10:
                return None
            n, at = struct.unpack("!Q", self.buf[2:10])[0], 10
        if len(self.buf) < at + n:
            return None
        payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
        return opcode, payload


def test_packet_too_large_over_websocket_while_the_client_keeps_writing(router):
    ws = RawWebSocket(router)
    ws.sock.sendall(ws.frame(connect_packet(new_id(), version=5)))
    opcode, connack = ws.read_frame()
    assert (opcode, connack[0] >> 4) == (0x2, 2)
    big = ws.frames(publish_packet("big", b"x" * (2 << 20), version=5))
    keep_writing(ws.sock, big, more=ws.frame(PINGREQS))
    stream = b""
    while True:
        frame = ws.read_frame()
        assert frame is not None, "closed before the close frame"
        if frame[0] == 0x8:
            break
        stream += frame[1]
    assert stream[:1] == b"\xe0", f"DISCONNECT before the close frame, got {stream!r}"
    assert stream[2] == 0x95


# ---------------------------------------------------------------------------------------
# Server Keep Alive (`limits.mqtt_keep_alive_max_secs`).

def test_server_keep_alive_is_announced_and_followed_by_paho(router_factory):
    router = router_factory("[limits]\nmqtt_keep_alive_max_secs = 1\n")
    c = Client(router, new_id(), 5)
    _, _, p = c.connect(keepalive=60)
    assert p.ServerKeepAlive == 1
    with pytest.raises(queue.Empty):
        c.disconnects.get(timeout=3.0)  # paho pings every second: still connected
    c.subscribe("ska/x", qos=1)
    c.publish("ska/x", b"alive", qos=1)
    assert c.get().payload == b"alive"


def test_keep_alive_zero_gets_the_maximum(router_factory):
    router = router_factory("[limits]\nmqtt_keep_alive_max_secs = 7\n")
    c = Client(router, new_id(), 5)
    _, _, p = c.connect(keepalive=0)
    assert p.ServerKeepAlive == 7


def test_server_keep_alive_is_enforced_with_disconnect_0x8d(router_factory):
    router = router_factory("[limits]\nmqtt_keep_alive_max_secs = 1\n")
    raw = Raw(router)
    started = time.monotonic()
    raw.send(connect_packet(new_id(), keepalive=60, version=5))
    raw.expect(2)
    p = raw.expect(14, timeout=5.0)
    elapsed = time.monotonic() - started
    assert p[2][0] == 0x8D
    assert 1.4 <= elapsed <= 3.0, elapsed


def test_keep_alive_maximum_is_enforced_silently_in_3_1_1(router_factory):
    router = router_factory("[limits]\nmqtt_keep_alive_max_secs = 1\n")
    raw = Raw(router)
    started = time.monotonic()
    raw.send(connect_packet(new_id(), keepalive=60))
    raw.expect(2)
    assert raw.closed(timeout=5.0) == []
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed <= 3.0, elapsed


# ---------------------------------------------------------------------------------------
# The payload limit (`limits.message_size_max_bytes` counts the payload).

@pytest.mark.parametrize("version,transport", [(4, "tcp"), (5, "tcp"), (5, "ws")])
def test_a_one_mib_payload_fits_the_default_limit(router, version, transport):
    sub = connected(router, version=version)
    sub.subscribe("mib/x", qos=1)
    pub = Client(router, new_id(), version, transport=transport)
    pub.connect()
    payload = os.urandom(1 << 20)
    pub.publish("mib/x", payload, qos=1)
    assert sub.get(timeout=10.0).payload == payload


def test_the_limit_counts_the_payload(router_factory):
    router = router_factory("[limits]\nmessage_size_max_bytes = 1000\n")
    c = Client(router, new_id(), 5)
    _, _, p = c.connect()
    assert p.MaximumPacketSize == 1000 + HEADROOM_BYTES
    raw = Raw(router)
    raw.send(connect_packet(new_id(), version=5))
    raw.expect(2)
    raw.send(publish_packet("lim/" + "t" * 200, b"x" * 1000, qos=1, packet_id=1, version=5))
    ack = raw.expect(4)
    assert ack[2][:2] == b"\x00\x01" and ack[2][2:3] in (b"", b"\x00")


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_a_payload_over_the_limit_is_disconnect_0x95(router_factory, qos):
    router = router_factory("[limits]\nmessage_size_max_bytes = 1000\n")
    raw = Raw(router)
    raw.send(connect_packet(new_id(), version=5))
    raw.expect(2)
    raw.send(publish_packet("lim/x", b"x" * 1001, qos=qos, packet_id=qos and 1, version=5))
    p = raw.expect(14)
    assert p[2][0] == 0x95
    assert raw.closed() == []


def test_a_payload_over_the_limit_closes_a_3_1_1_connection(router_factory):
    router = router_factory("[limits]\nmessage_size_max_bytes = 1000\n")
    raw = Raw(router)
    raw.send(connect_packet(new_id()))
    raw.expect(2)
    raw.send(publish_packet("lim/x", b"x" * 1001, qos=1, packet_id=1))
    assert raw.closed() == []


def test_a_will_over_the_limit_is_refused_with_0x95(router_factory):
    router = router_factory("[limits]\nmessage_size_max_bytes = 1000\n")
    raw = Raw(router)
    raw.send(connect_packet(new_id(), version=5, will=("lim/will", b"w" * 1001, 0, False)))
    _, _, connack = raw.expect(2)
    assert connack[1] == 0x95
    assert raw.closed() == []
