"""Resource limits on the wire (issue 16, docs/bad-input.md "Limits"): new connections per
second per address, subscriptions per session (WAMP and MQTT 5 / 3.1.1), calls in flight
per session; each refusal with its documented answer, the router unharmed."""

import asyncio
import socket
import struct
import time

import pytest
from autobahn.wamp.exception import ApplicationError

from conftest import poll_until
from mqtt_client import Client, new_id
from wamp_client import connect, run

CONNECT_311 = bytes([0x10, 0x0C, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 0])


def mqtt_connects(router, source="127.0.0.1"):
    """True when a CONNECT from `source` gets a CONNACK, False when the router closes the
    connection first."""
    try:
        with socket.socket() as sock:
            sock.settimeout(5)
            sock.bind((source, 0))
            sock.connect(router.mqtt)
            sock.sendall(CONNECT_311)
            return sock.recv(4)[:1] == b"\x20"
    except OSError:
        return False


def test_connections_past_the_rate_of_one_address_are_closed_and_logged_once(router_factory):
    router = router_factory("[limits]\nconnection_rate_per_ip_max = 5\n")
    started = time.monotonic()
    answers = [mqtt_connects(router) for _ in range(20)]
    took = time.monotonic() - started
    # A burst of 5, then 5 per second: at most a few more while the loop ran.
    assert answers[:5] == [True] * 5, answers
    assert answers.count(True) <= 5 + int(took * 5) + 1, (answers, took)
    assert answers.count(False) >= 10, answers
    # Another address has its own budget.
    assert mqtt_connects(router, source="127.0.0.2")
    logs = poll_until(lambda: router.logs() if "connection_rate_per_ip_max" in router.logs() else None, 5,
                      "the refusal is logged")
    lines = [line for line in logs.splitlines() if "connection_rate_per_ip_max" in line]
    assert len(lines) == 1, lines
    # A second later the address may connect again.
    time.sleep(1.1)
    assert mqtt_connects(router)
    assert router.proc.poll() is None


LIMITS = "[limits]\nsubscriptions_per_session_max = 3\ncalls_in_flight_per_session_max = 2\n"


@pytest.mark.parametrize("version", [5, 4])
def test_mqtt_subscriptions_past_the_limit_get_quota_exceeded(router_factory, version):
    router = router_factory(LIMITS)
    client = Client(router, version=version)
    try:
        assert client.connect()[1] == 0
        prefix = new_id()
        codes = []
        for i in range(4):
            rcs = client.subscribe(f"{prefix}/{i}", qos=1)
            codes.append(int(getattr(rcs[0], "value", rcs[0])))
        refused = 0x97 if version == 5 else 0x80
        assert codes == [1, 1, 1, refused], codes
        # The three subscriptions work.
        client.publish(f"{prefix}/2", b"still here", qos=1)
        assert client.get().payload == b"still here"
    finally:
        client.disconnect()


def test_wamp_subscriptions_and_calls_past_the_limits(router_factory):
    router = router_factory(LIMITS)

    async def scenario():
        session = await connect(router)
        for i in range(3):
            await session.subscribe(lambda *a: None, f"com.limit.t{i}")
        with pytest.raises(ApplicationError) as refused:
            await session.subscribe(lambda *a: None, "com.limit.t3")
        assert refused.value.error == "fox.error.limit_exceeded"
        callee = await connect(router)
        release = asyncio.get_event_loop().create_future()

        async def slow():
            await release
            return "done"

        await callee.register(slow, "com.limit.slow")
        first = asyncio.ensure_future(session.call("com.limit.slow"))
        second = asyncio.ensure_future(session.call("com.limit.slow"))
        await asyncio.sleep(0.2)
        with pytest.raises(ApplicationError) as refused:
            await session.call("com.limit.slow")
        assert refused.value.error == "fox.error.limit_exceeded"
        release.set_result(None)
        assert await first == "done" and await second == "done"
        assert await session.call("com.limit.slow") == "done", "room again"
        session.leave()
        callee.leave()

    run(scenario())


def test_connections_past_connections_max_are_told_where_the_protocol_can_say_it(router_factory):
    router = router_factory("[limits]\nconnections_max = 2\n")
    held = []
    try:
        for _ in range(2):
            sock = socket.create_connection(router.mqtt, timeout=5)
            sock.sendall(CONNECT_311)
            assert sock.recv(4)[:1] == b"\x20"
            held.append(sock)
        # RawSocket: handshake error 4, maximum connection count reached.
        with socket.create_connection(router.rawsocket, timeout=5) as sock:
            sock.sendall(bytes([0x7F, 0xF1, 0, 0]))
            assert sock.recv(4) == bytes([0x7F, 0x40, 0, 0])
        # WebSocket port: HTTP 503.
        with socket.create_connection(router.addr["ws"], timeout=5) as sock:
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 503")
        # MQTT: closed before CONNACK (3.1.1 has no code before CONNECT is read).
        for _ in range(20):
            assert not mqtt_connects(router)
        lines = [line for line in router.logs().splitlines() if "connections_max" in line]
        assert len(lines) == 3, lines
        assert sum('listener="mqtt"' in line for line in lines) == 1, "one line per listener for the flood"
        # Room again once one leaves.
        held.pop().close()
        poll_until(lambda: mqtt_connects(router), 5, "a connection once there is room")
    finally:
        for sock in held:
            sock.close()


def test_a_listener_limit_refuses_on_that_listener_only(router_factory):
    """limits.listener_connections_max = { rawsocket = 2 }: a third RawSocket connection
    gets handshake error 4 while MQTT still takes connections (one shared connections_max
    is not the only bound); unknown listener names are refused at start."""
    router = router_factory("[limits]\nlistener_connections_max = { rawsocket = 2 }\n")
    held = []
    try:
        for _ in range(2):
            sock = socket.create_connection(router.rawsocket, timeout=5)
            sock.sendall(bytes([0x7F, 0xF1, 0, 0]))
            answer = sock.recv(4)
            assert answer[0] == 0x7F and answer[1] & 0x0F == 1, answer  # accepted, JSON
            held.append(sock)
        for _ in range(5):
            with socket.create_connection(router.rawsocket, timeout=5) as sock:
                sock.sendall(bytes([0x7F, 0xF1, 0, 0]))
                assert sock.recv(4) == bytes([0x7F, 0x40, 0, 0])
        for _ in range(5):
            assert mqtt_connects(router)
        lines = [line for line in router.logs().splitlines() if "listener_connections_max" in line]
        assert len(lines) == 1 and 'listener="rawsocket"' in lines[0], lines
        held.pop().close()

        def rawsocket_joins():
            with socket.create_connection(router.rawsocket, timeout=5) as sock:
                sock.sendall(bytes([0x7F, 0xF1, 0, 0]))
                answer = sock.recv(4)
                return answer[0] == 0x7F and answer[1] & 0x0F == 1

        poll_until(rawsocket_joins, 5, "a RawSocket connection once there is room")
    finally:
        for sock in held:
            sock.close()


def test_a_session_over_its_message_rate_is_slowed_down_not_dropped(router_factory):
    """limits.session_message_rate_max = 200: 600 publishes sent at once take about
    (600 - 200) / 200 = 2 s to get through, all arrive in order, the connection stays."""
    router = router_factory("[limits]\nsession_message_rate_max = 200\n")
    topic = f"rate/{new_id()}".encode()
    with socket.create_connection(router.mqtt, timeout=10) as sock:
        sock.sendall(CONNECT_311)
        assert sock.recv(4)[:1] == b"\x20"
        body = struct.pack("!H", 1) + struct.pack("!H", len(topic)) + topic + b"\x00"
        sock.sendall(bytes([0x82, len(body)]) + body)
        assert sock.recv(5)[:1] == b"\x90"
        packets = []
        for i in range(600):
            body = struct.pack("!H", len(topic)) + topic + f"{i:04}".encode()
            packets.append(bytes([0x30, len(body)]) + body)
        started = time.monotonic()
        sock.sendall(b"".join(packets))
        expected = b"".join(packets)
        got = b""
        while len(got) < len(expected):
            chunk = sock.recv(65536)
            assert chunk, "the router closed the connection"
            got += chunk
        took = time.monotonic() - started
    assert got == expected, "every message, in order"
    assert 1.6 < took < 6, took
    lines = [line for line in router.logs().splitlines() if "session_message_rate_max" in line]
    assert len(lines) == 1, lines


def test_a_wamp_session_over_its_message_rate_is_slowed_down_not_dropped(router_factory):
    from wamp_client import RawSocketClient
    router = router_factory("[limits]\nsession_message_rate_max = 200\n")
    client = RawSocketClient(router.rawsocket, timeout=10)
    try:
        client.join()
        client.send([32, 1, {}, "com.rate"])
        subscribed = client.recv()
        assert subscribed[0] == 33, subscribed
        started = time.monotonic()
        for i in range(600):
            client.send([16, 2 + i, {"exclude_me": False}, "com.rate", [i]])
        got = []
        while len(got) < 600:
            message = client.recv()
            assert message[0] == 36, message
            got.append(message[4][0])
        took = time.monotonic() - started
    finally:
        client.close()
    assert got == list(range(600))
    assert 1.6 < took < 6, took
