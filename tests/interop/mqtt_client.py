"""Helpers for the MQTT end-to-end tests: a synchronous wrapper around paho-mqtt 2.x that
records CONNACK, SUBACK, messages and disconnects in queues (so tests wait for events with
deadlines), and a raw-socket MQTT client for what paho cannot do on purpose (duplicate
QoS 2 packet IDs, unacknowledged messages, malformed packets)."""

import queue
import socket
import struct
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

VERSIONS = {3: mqtt.MQTTv31, 4: mqtt.MQTTv311, 5: mqtt.MQTTv5}


def props(packet_type=PacketTypes.CONNECT, **fields):
    """paho Properties for a packet type, from keyword fields (e.g. SessionExpiryInterval=5)."""
    p = Properties(packet_type)
    for name, value in fields.items():
        setattr(p, name, value)
    return p


def new_id(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class Client:
    """One paho client running its network loop in a thread."""

    def __init__(self, router, client_id=None, version=5, transport="tcp", manual_ack=False, clean=True,
                 tls_context=None):
        """`transport`: "tcp", "ws", or over TLS (with `tls_context`, an ssl.SSLContext)
        "mqtts" or "wss"."""
        self.router = router
        self.version = version
        self.transport = transport
        self.clean = clean
        kwargs = {}
        if version != 5:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="" if client_id is None else client_id,
                             protocol=VERSIONS[version],
                             transport="websockets" if transport in ("ws", "wss") else "tcp",
                             manual_ack=manual_ack, reconnect_on_failure=False, **kwargs)
        if transport in ("ws", "wss"):
            self.c.ws_set_options(path="/mqtt")
        if tls_context is not None:
            self.c.tls_set_context(tls_context)
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        self.subacks = queue.Queue()
        self.unsubacks = queue.Queue()
        self.disconnects = queue.Queue()
        self.c.on_connect = lambda c, u, flags, rc, p: self.connacks.put((flags, rc, p))
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put((mid, rcs, p))
        self.c.on_unsubscribe = lambda c, u, mid, rcs, p: self.unsubacks.put((mid, rcs, p))
        self.c.on_disconnect = lambda c, u, flags, rc, p: self.disconnects.put(rc)

    def connect(self, keepalive=60, properties=None, username=None, password=None,
                will=None, timeout=5.0):
        """Connects and returns (session_present, reason_code, properties)."""
        if username is not None:
            self.c.username_pw_set(username, password)
        if will is not None:
            self.c.will_set(**will)
        host, port = self.router.mqtt if self.transport == "tcp" else self.router.addr[self.transport]
        kwargs = {"keepalive": keepalive}
        if self.version == 5:
            kwargs["clean_start"] = self.clean
            kwargs["properties"] = properties
        self.c.connect(host, port, **kwargs)
        self.c.loop_start()
        flags, rc, p = self.connacks.get(timeout=timeout)
        return flags.session_present, rc, p

    def subscribe(self, topic, qos=0, properties=None, timeout=5.0, **options):
        """Subscribes and returns the SUBACK reason codes."""
        if self.version == 5:
            opts = mqtt.SubscribeOptions(qos=qos, **options)
            self.c.subscribe(topic, options=opts, properties=properties)
        else:
            self.c.subscribe(topic, qos)
        _, rcs, _ = self.subacks.get(timeout=timeout)
        return rcs

    def unsubscribe(self, topic, timeout=5.0):
        self.c.unsubscribe(topic)
        _, rcs, _ = self.unsubacks.get(timeout=timeout)
        return rcs

    def publish(self, topic, payload, qos=0, retain=False, properties=None, wait=True):
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if wait and qos > 0:
            info.wait_for_publish(5.0)
            assert info.is_published(), "publish not acknowledged"
        return info

    def get(self, timeout=5.0):
        return self.messages.get(timeout=timeout)

    def expect_none(self, wait=0.5):
        try:
            m = self.messages.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {m.topic}: {m.payload!r}")

    def disconnect(self, properties=None):
        self.c.disconnect(properties=properties)
        self.c.loop_stop()

    def kill(self):
        """Drops the connection without DISCONNECT (as a crashed device would)."""
        sock = self.c.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except (OSError, AttributeError):
                pass
        self.c.loop_stop()
        if sock is not None:
            sock.close()


# --------------------------------------------------------------------------------------
# Raw packets (MQTT 3.1.1 unless a function says 5.0).

def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(b)) + b


def packet(first_byte, body):
    return bytes([first_byte]) + varint(len(body)) + body


def connect_packet(client_id, clean=True, keepalive=60, version=4, properties=b"", will=None):
    flags = 0x02 if clean else 0
    payload = s(client_id)
    if will is not None:
        topic, message, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += (b"\x00" if version == 5 else b"") + s(topic) + s(message)
    body = s("MQTT") + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == 5:
        body += varint(len(properties)) + properties
    return packet(0x10, body + payload)


def subscribe_packet(packet_id, topic, qos, version=4):
    props = b"\x00" if version == 5 else b""
    return packet(0x82, struct.pack("!H", packet_id) + props + s(topic) + bytes([qos]))


def publish_packet(topic, payload, qos=0, packet_id=None, dup=False, retain=False, version=4, properties=b""):
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = s(topic)
    if qos:
        body += struct.pack("!H", packet_id)
    if version == 5:
        body += varint(len(properties)) + properties
    return packet(first, body + payload)


def ack_packet(kind, packet_id):
    first = {"puback": 0x40, "pubrec": 0x50, "pubrel": 0x62, "pubcomp": 0x70}[kind]
    return packet(first, struct.pack("!H", packet_id))


class Raw:
    """A raw MQTT connection: send bytes, read whole packets as (type, flags, body)."""

    def __init__(self, router, timeout=5.0):
        self.sock = socket.create_connection(router.mqtt, timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def read(self, timeout=5.0):
        """The next packet, or None when the server closed the connection."""
        deadline = time.monotonic() + timeout
        while True:
            parsed = self._parse()
            if parsed:
                return parsed
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no packet before the deadline")
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
        length, mult, i = 0, 1, 1
        while True:
            if i >= len(self.buf):
                return None
            b = self.buf[i]
            length += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
        if len(self.buf) < i + length:
            return None
        first, body = self.buf[0], self.buf[i:i + length]
        self.buf = self.buf[i + length:]
        return (first >> 4, first & 0x0F, body)

    def expect(self, ptype, timeout=5.0):
        p = self.read(timeout)
        assert p is not None, f"connection closed while waiting for packet type {ptype}"
        assert p[0] == ptype, f"expected packet type {ptype}, got {p}"
        return p

    def closed(self, timeout=5.0):
        """Reads until the server closes; returns the packets seen before."""
        seen = []
        while True:
            p = self.read(timeout)
            if p is None:
                return seen
            seen.append(p)

    def close(self):
        self.sock.close()


def publish_fields(p, version=4):
    """(topic, packet_id, payload, dup, qos, retain) of a raw PUBLISH."""
    _, flags, body = p
    qos = (flags >> 1) & 3
    tlen = struct.unpack("!H", body[:2])[0]
    topic = body[2:2 + tlen].decode()
    rest = body[2 + tlen:]
    pid = None
    if qos:
        pid = struct.unpack("!H", rest[:2])[0]
        rest = rest[2:]
    if version == 5:
        plen, mult, i = 0, 1, 0
        while True:
            b = rest[i]
            plen += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
        rest = rest[i + plen:]
    return topic, pid, rest, bool(flags & 0x08), qos, bool(flags & 1)
