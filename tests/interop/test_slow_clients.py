"""Slowloris clients and clients that stop reading (issue 16): 1,000 of each cost bounded
memory, are disconnected within a documented time, and other clients keep their latency
meanwhile.

- Slowloris: connections that trickle a byte now and then and never finish their
  handshake (WebSocket upgrade, RawSocket handshake, MQTT CONNECT) are closed when
  `limits.handshake_timeout_ms` runs out (2 s here).
- Stop-reading: MQTT subscribers that never read again (and send nothing, not even
  PINGREQ) while a publisher floods their topic are closed by the keep alive (1.5 times the
  2 s they asked for); their queues are bounded by `limits.session_queue_max`.

RSS is read from /proc/<pid>/status; the bounds are generous (debug build), what matters is
that they hold with 1,000 clients and do not grow with the flood."""

import socket
import statistics
import struct
import time

from conftest import poll_until
from mqtt_client import new_id

CLIENTS = 1000
HANDSHAKE_TIMEOUT_MS = 2000
CONFIG = f"""
[limits]
handshake_timeout_ms = {HANDSHAKE_TIMEOUT_MS}
session_queue_max = 64
"""


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def closed_by_peer(sock):
    """True when the other side closed: reads what is buffered, then EOF or a reset;
    False when the connection is still open (nothing more to read right now)."""
    sock.setblocking(False)
    try:
        while True:
            if not sock.recv(1 << 16):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


class Probe:
    """A raw MQTT 3.1.1 client that publishes QoS 0 to a topic it subscribed to and times
    the way back (paho's own loop adds tens of milliseconds of its own)."""

    def __init__(self, router):
        self.topic = f"probe/{new_id()}".encode()
        self.sock = socket.create_connection(router.mqtt, timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(mqtt_connect(new_id("probe"), keepalive=60))
        assert self.sock.recv(4)[:1] == b"\x20"
        body = struct.pack("!H", 1) + struct.pack("!H", len(self.topic)) + self.topic + b"\x00"
        self.sock.sendall(bytes([0x82, len(body)]) + body)
        assert self.sock.recv(5)[:1] == b"\x90"

    def round_trip_ms(self, count=50):
        times = []
        for i in range(count):
            payload = f"{i:08}".encode()
            body = struct.pack("!H", len(self.topic)) + self.topic + payload
            packet = bytes([0x30, len(body)]) + body
            started = time.monotonic()
            self.sock.sendall(packet)
            got = b""
            while len(got) < len(packet):
                got += self.sock.recv(len(packet) - len(got))
            times.append((time.monotonic() - started) * 1000)
            assert got == packet
        return statistics.median(times)

    def close(self):
        self.sock.close()


def mqtt_connect(client_id, keepalive):
    body = (struct.pack("!H", 4) + b"MQTT" + bytes([4, 0x02]) + struct.pack("!H", keepalive)
            + struct.pack("!H", len(client_id)) + client_id.encode())
    return bytes([0x10, len(body)]) + body


def test_a_thousand_slowloris_clients_are_closed_at_the_handshake_timeout(router_factory):
    router = router_factory(CONFIG)
    pid = router.proc.pid
    probe = Probe(router)
    quiet_ms = probe.round_trip_ms()
    before = rss_kib(pid)
    # A third each: a WebSocket upgrade that never ends, a RawSocket handshake of one byte,
    # an MQTT CONNECT cut short; each gets one more byte later.
    starts = {"ws": b"GET /ws HTTP/1.1\r\nHost: x\r\n", "rawsocket": b"\x7f", "mqtt": b"\x10\x40\x00"}
    trickle = {"ws": b"X", "rawsocket": b"", "mqtt": b"\x04"}
    gates = list(starts)
    socks = []
    opened = time.monotonic()
    for i in range(CLIENTS):
        gate = gates[i % 3]
        sock = socket.create_connection(router.addr[gate], timeout=5)
        sock.sendall(starts[gate])
        socks.append((gate, sock))
    for gate, sock in socks:
        if trickle[gate]:
            try:
                sock.sendall(trickle[gate])
            except OSError:
                pass
    held = rss_kib(pid)
    loaded_ms = probe.round_trip_ms()
    # Closed within the handshake timeout (plus the time it took to open them all and a
    # margin for a debug build on two busy cores).
    deadline = HANDSHAKE_TIMEOUT_MS / 1000 + (time.monotonic() - opened) + 3
    poll_until(lambda: all(closed_by_peer(s) for _, s in socks), deadline,
               "every slowloris connection closed by the router")
    for _, sock in socks:
        sock.close()
    after = rss_kib(pid)
    probe.close()
    print(f"RSS KiB before {before} holding {CLIENTS} slowloris {held} after {after}; "
          f"probe round trip median {quiet_ms:.2f} ms quiet, {loaded_ms:.2f} ms with them")
    assert held - before < 64 * CLIENTS, "under 64 KiB per half-open connection"
    assert loaded_ms < max(20.0, 10 * quiet_ms), (quiet_ms, loaded_ms)
    assert router.proc.poll() is None


def recv_exact(sock, n):
    """`n` bytes from `sock` (fewer only if it closes)."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_a_thousand_subscribers_that_stop_reading_cost_bounded_memory_and_are_closed(router_factory):
    router = router_factory(CONFIG)
    pid = router.proc.pid
    topic = f"flood/{new_id()}"
    before = rss_kib(pid)
    socks = []
    subscribe = lambda pid_: bytes([0x82]) + bytes([2 + 2 + len(topic) + 1]) + struct.pack("!H", pid_) \
        + struct.pack("!H", len(topic)) + topic.encode() + b"\x00"
    # SUBSCRIBE pipelined behind CONNECT: with a 2 s keep alive, a SUBSCRIBE sent only after
    # reading a thousand CONNACKs one by one could come after the router (rightly) closed a
    # connection that had been silent for 1.5 keep alives on a busy machine.
    for i in range(CLIENTS):
        sock = socket.create_connection(router.mqtt, timeout=5)
        sock.sendall(mqtt_connect(f"stalled-{i}", keepalive=2) + subscribe(1))
        socks.append(sock)
    for sock in socks:
        answer = recv_exact(sock, 4 + 5)
        assert answer[:1] == b"\x20", "CONNACK"
        assert answer[4:5] == b"\x90", "SUBACK"
    connected = time.monotonic()
    # From here on they read nothing and send nothing.
    probe = Probe(router)
    quiet_ms = probe.round_trip_ms()
    # A raw publisher (paho's select() loop cannot take a descriptor past 1024, and this
    # process holds a thousand sockets by now).
    publisher = socket.create_connection(router.mqtt, timeout=5)
    publisher.sendall(mqtt_connect(new_id("publisher"), keepalive=60))
    assert publisher.recv(4)[:1] == b"\x20"
    body = struct.pack("!H", len(topic)) + topic.encode() + b"x" * 1024
    packet = bytes([0x30]) + bytes([len(body) & 0x7F | 0x80, len(body) >> 7]) + body
    publisher.sendall(packet * 300)
    loaded_ms = probe.round_trip_ms()
    flooded = rss_kib(pid)
    # Keep alive 2 s: closed after 3 s of silence.
    deadline = 3 + (time.monotonic() - connected) + 4
    poll_until(lambda: all(closed_by_peer(s) for s in socks), deadline,
               "every subscriber that stopped reading closed by its keep alive")
    for sock in socks:
        sock.close()
    after = rss_kib(pid)
    publisher.close()
    probe.close()
    print(f"RSS KiB before {before} with {CLIENTS} stalled subscribers flooded {flooded} after {after}; "
          f"probe round trip median {quiet_ms:.2f} ms before the flood, {loaded_ms:.2f} ms after")
    # 64 queued 1 KiB messages per subscriber at most, plus buffers: well under 256 KiB each.
    assert flooded - before < 256 * CLIENTS
    assert loaded_ms < max(20.0, 10 * quiet_ms), (quiet_ms, loaded_ms)
    assert router.proc.poll() is None


def rawsocket_json_subscriber(router, topic):
    """A raw WAMP RawSocket JSON session subscribed to `topic`, with a tiny receive
    buffer, that the caller then never reads again."""
    import json

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(router.rawsocket)
    sock.sendall(b"\x7f\xf1\x00\x00")
    assert recv_exact(sock, 4)[:1] == b"\x7f"

    def send(message):
        data = json.dumps(message).encode()
        sock.sendall(b"\x00" + len(data).to_bytes(3, "big") + data)

    def recv():
        header = recv_exact(sock, 4)
        return json.loads(recv_exact(sock, int.from_bytes(header[1:], "big")))

    send([1, "realm1", {"roles": {"subscriber": {}}}])
    assert recv()[0] == 2, "WELCOME"
    send([32, 1, {}, topic])
    assert recv()[0] == 33, "SUBSCRIBED"
    return sock


def test_clients_that_stop_reading_are_closed_at_the_write_timeout(router_factory):
    """A subscriber that stops reading while still connected (TCP window shut, nothing
    sent, no keep alive) is closed once one write to it has blocked for
    `limits.write_timeout_ms` (1 s here), WAMP and MQTT alike; the MQTT one's will is
    published. Without the timeout the WAMP one stayed forever (its events only dropped),
    the MQTT one for a fixed 30 s."""
    import paho.mqtt.client as mqtt

    router = router_factory("[limits]\nwrite_timeout_ms = 1000\nsession_queue_max = 64\n")
    topic = f"stuck/{new_id()}"
    wills = []
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=new_id("will-watcher"))
    watcher.on_message = lambda _c, _u, m: wills.append(m.payload)
    watcher.connect(*router.mqtt)
    watcher.subscribe("stuck-will/#", 1)
    watcher.loop_start()
    try:
        mqtt_sub = socket.socket()
        mqtt_sub.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        mqtt_sub.settimeout(5)
        mqtt_sub.connect(router.mqtt)
        client_id, will_topic, will = f"stuck-{new_id()}".encode(), b"stuck-will/x", b"gone"
        body = (struct.pack("!H", 4) + b"MQTT" + bytes([4, 0x06]) + struct.pack("!H", 0)
                + struct.pack("!H", len(client_id)) + client_id
                + struct.pack("!H", len(will_topic)) + will_topic + struct.pack("!H", len(will)) + will)
        subscribe = struct.pack("!H", 1) + struct.pack("!H", len(topic)) + topic.encode() + b"\x00"
        mqtt_sub.sendall(bytes([0x10, len(body)]) + body + bytes([0x82, len(subscribe)]) + subscribe)
        answer = recv_exact(mqtt_sub, 4 + 5)
        assert answer[:1] == b"\x20" and answer[4:5] == b"\x90", answer
        wamp_sub = rawsocket_json_subscriber(router, topic.replace("/", "."))
        # Both stop reading now. A flood of 64 KiB messages fills their windows and the
        # router's socket buffers (a few MiB on loopback).
        publisher = socket.create_connection(router.mqtt, timeout=5)
        publisher.sendall(mqtt_connect(new_id("flooder"), keepalive=60))
        assert publisher.recv(4)[:1] == b"\x20"
        payload = struct.pack("!H", len(topic)) + topic.encode() + b"x" * (64 * 1024)
        length = len(payload)
        varint = bytes([length & 0x7F | 0x80, (length >> 7) & 0x7F | 0x80, length >> 14])
        packet = bytes([0x30]) + varint + payload
        started = time.monotonic()
        for _ in range(160):
            publisher.sendall(packet)
        log = router.log_path
        poll_until(lambda: "whose write blocked" in log.read_text()
                   and log.read_text().count("whose write blocked") >= 2, 15,
                   "both stuck subscribers closed at the write timeout")
        took = time.monotonic() - started
        poll_until(lambda: wills == [b"gone"], 5, "the MQTT subscriber's will")
        text = log.read_text()
        assert "closing an MQTT connection whose write blocked" in text
        assert "closing a WAMP connection whose write blocked" in text
        # The WAMP side still tries its close (flush, close frame) for CLOSE_WAIT_MS (1 s).
        poll_until(lambda: closed_by_peer(mqtt_sub) and closed_by_peer(wamp_sub), 3,
                   "both sockets closed by the router")
        print(f"both closed {took:.1f} s after the flood began (write timeout 1 s)")
        publisher.close()
        assert router.proc.poll() is None
    finally:
        watcher.loop_stop()
        watcher.disconnect()
