"""Process and session lifecycle: GOODBYE, SIGTERM shutdown, handshake timeouts, slow
consumers, configuration errors."""

import asyncio
import socket
import subprocess
import time

import pytest
from autobahn.wamp.types import PublishOptions

from conftest import BIN
from wamp_client import RawSocketClient, WebSocketClient, assert_stays, connect, run, wait_until

ACK = PublishOptions(acknowledge=True)


def test_goodbye_is_answered(router):
    async def main():
        s = await connect(router, transport="rawsocket", serializer="cbor")
        s.leave("wamp.close.normal")
        await asyncio.wait_for(s.disconnected, 3)
        assert s.left.result().reason == "wamp.close.goodbye_and_out"
        other = await connect(router)
        assert await other.call("wamp.session.count") == 1

    run(main())


def test_session_ids_are_unique_and_in_range(router):
    async def main():
        sessions = [await connect(router, transport=t) for t in ("websocket", "rawsocket") * 10]
        ids = [s.session_id for s in sessions]
        assert len(set(ids)) == len(ids)
        assert all(isinstance(i, int) and 1 <= i <= 2**53 for i in ids), ids

    run(main())


def test_sigterm_sends_system_shutdown_and_exits_zero(router):
    async def main():
        sessions = [
            await connect(router, transport="websocket", serializer="json"),
            await connect(router, transport="websocket", serializer="msgpack"),
            await connect(router, transport="rawsocket", serializer="cbor"),
            await connect(router, realm="realm2", transport="rawsocket", serializer="json"),
        ]
        await sessions[0].register(lambda: 1, "com.test.alive")
        # a client still in its handshake must not hold the shutdown up
        lingering = RawSocketClient(router.rawsocket, "json")
        lingering.handshake()
        started = time.monotonic()
        code = await asyncio.to_thread(router.terminate, 10.0)
        elapsed = time.monotonic() - started
        assert code == 0, f"exit code {code}; log:\n{router.logs()}"
        assert elapsed < 5.0, f"shutdown took {elapsed:.1f} s"
        await wait_until(lambda: all(s.left.done() for s in sessions), 2.0, what="every session got GOODBYE")
        reasons = [s.left.result().reason for s in sessions]
        assert reasons == ["wamp.close.system_shutdown"] * 4, reasons
        lingering.close()

    run(main())


def test_handshake_timeout(router_factory):
    router = router_factory("[limits]\nhandshake_timeout_ms = 500\n")
    started = time.monotonic()
    silent_ws = WebSocketClient(router.addr["ws"])
    assert silent_ws.upgraded()
    raw_no_bytes = RawSocketClient(router.rawsocket, "json")
    raw_no_hello = RawSocketClient(router.rawsocket, "json")
    raw_no_hello.handshake()
    assert silent_ws.is_closed(3.0), "WebSocket without HELLO not closed"
    assert raw_no_bytes.is_closed(3.0), "RawSocket without handshake not closed"
    assert raw_no_hello.is_closed(3.0), "RawSocket without HELLO not closed"
    assert time.monotonic() - started < 3.0
    # a client that does HELLO in time is not affected
    joined = RawSocketClient(router.rawsocket, "json")
    joined.join()
    assert not joined.is_closed(0.8), "a joined session was closed by the handshake timeout"


def test_slow_consumer_drops_events_and_router_stays_responsive(router_factory):
    router = router_factory("[limits]\nsession_queue_max = 128\n")
    count, size = 800, 32 * 1024

    async def main():
        # the slow consumer: a raw RawSocket session with a tiny receive buffer that never reads
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.settimeout(5)
        slow.connect(router.rawsocket)
        slow_client = RawSocketClient.__new__(RawSocketClient)
        slow_client.serializer, slow_client.sock, slow_client.handshake_reply = "json", slow, None
        slow_client.join()
        slow_client.send([32, 1, {}, "com.test.flood"])
        assert slow_client.recv()[0] == 33

        publisher = await connect(router, transport="rawsocket", serializer="msgpack")
        fast = await connect(router, serializer="msgpack")
        bystander = await connect(router, transport="rawsocket")
        got = []
        await fast.subscribe(lambda i, blob: got.append(i), "com.test.flood")
        blob = "x" * size
        for i in range(count):
            publisher.publish("com.test.flood", i, blob)
            if i % 50 == 49:
                # bursts of 50 (< session_queue_max): a subscriber that keeps up loses nothing
                await wait_until(lambda: len(got) == i + 1, 10.0, what=f"fast subscriber kept up to {i}")
                loop = asyncio.get_event_loop()
                t0 = loop.time()
                assert await asyncio.wait_for(bystander.call("wamp.session.count"), 2.0) == 4
                assert loop.time() - t0 < 1.0, "router slow to answer while a consumer is stuck"
        await publisher.publish("com.test.flood", count, "", options=ACK)
        await wait_until(lambda: len(got) == count + 1, 30.0, what="fast subscriber got every event")
        assert got == list(range(count + 1)), "fast subscriber lost or reordered events"

        # now drain the slow consumer: it must have lost events, and still be connected
        events = []
        slow.settimeout(1.0)
        try:
            while True:
                msg = slow_client.recv()
                if msg[0] == 36:
                    events.append(msg[4][0])
                else:
                    assert msg[0] not in (3, 6), f"slow consumer closed: {msg}"
        except socket.timeout:
            pass
        assert 0 < len(events) < count, f"slow consumer received {len(events)} of {count + 1} events"
        assert events == sorted(events), "events out of order"
        slow_client.send([48, 9, {}, "wamp.session.count"])
        slow.settimeout(5.0)
        reply = slow_client.recv()
        while reply[0] == 36:
            reply = slow_client.recv()
        assert reply[:2] == [50, 9], reply
        assert "slow consumer" in router.logs()

    run(main(), timeout=90)


CONFIG_ERRORS = {
    "unknown key": ("[limits]\nsession_queue_max = 3\nbogus_key = 1\n", ["line 3", "bogus_key"]),
    "bad toml": ("[router]\nauto_create_realms = \n", ["line 2"]),
    "wrong type": ("[auth]\nanonymous = \"yes\"\n", ["line 2"]),
    "undefined role": ("[[user]]\nauthid = \"a\"\nsecret = \"s\"\nrole = \"nope\"\n", ["nope"]),
}


@pytest.mark.parametrize("name", list(CONFIG_ERRORS))
def test_bad_config_exits_non_zero(tmp_path, name):
    text, must_mention = CONFIG_ERRORS[name]
    path = tmp_path / "config.toml"
    path.write_text(text)
    proc = subprocess.run([str(BIN), "serve", "--ws", "127.0.0.1:0", "--rawsocket", "127.0.0.1:0",
                           "--mqtt", "127.0.0.1:0", "--admin", "off", "--config", str(path)],
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode != 0
    assert "LISTEN" not in proc.stdout
    for word in must_mention:
        assert word in proc.stderr, f"stderr does not mention {word!r}: {proc.stderr}"


def test_stuck_callee_is_closed_when_an_invocation_finds_its_queue_full(router_factory):
    """config.rs: a session whose queue is full for a non-event message (INVOCATION) is
    closed (wamp.close.slow_consumer); the caller gets an ERROR instead of waiting."""
    router = router_factory("[limits]\nsession_queue_max = 8\n")

    async def main():
        stuck_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stuck_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck_sock.settimeout(5)
        stuck_sock.connect(router.rawsocket)
        stuck = RawSocketClient.__new__(RawSocketClient)
        stuck.serializer, stuck.sock, stuck.handshake_reply = "json", stuck_sock, None
        welcome = stuck.join()
        stuck_id = welcome[1]
        stuck.send([32, 1, {}, "com.test.flood"])
        assert stuck.recv()[0] == 33
        stuck.send([64, 2, {}, "com.test.stuck"])
        assert stuck.recv()[0] == 65

        observer = await connect(router)
        left = []
        await observer.subscribe(lambda sid, *rest: left.append(sid), "wamp.session.on_leave")
        publisher = await connect(router, transport="rawsocket", serializer="msgpack")
        blob = "y" * 64 * 1024
        # paced bursts of 4 (under the 8-slot queue): the router writes ~20 MB toward the stuck
        # client, more than the socket buffers hold (4 MB send, a few KB receive), so its
        # writer blocks for good. The short pause after each burst lets the writer keep up
        # while it can: events it drops (a busy machine) are bytes that never fill the
        # buffers, and a writer that never blocks would take the INVOCATIONs below.
        for i in range(320):
            publisher.publish("com.test.flood", i, blob)
            if i % 4 == 3:
                await publisher.publish("com.test.flood.tick", options=ACK)
                await asyncio.sleep(0.001)
        # then the queue fills and stays full
        for i in range(40):
            publisher.publish("com.test.flood", "more", blob)
        await publisher.publish("com.test.flood.tick", options=ACK)
        await wait_until(lambda: "dropping events" in router.logs(), 10.0, what="router dropping events")

        caller = await connect(router)
        loop = asyncio.get_event_loop()
        started = loop.time()
        # The writer toward the stuck client may still trickle a few bytes out (the kernel
        # can reopen a tiny receive window), so one INVOCATION might find a free slot. Twelve
        # concurrent calls cannot all fit in 8 slots: one of them closes the session, and
        # every pending call to the departed callee then fails with wamp.error.canceled.
        # The session leaves the realm as it is closed, so a call the router reads after
        # that (the twelve CALLs may come in more than one read) finds no registration and
        # fails with wamp.error.no_such_procedure. No call may wait or succeed.
        calls = [asyncio.wait_for(caller.call("com.test.stuck"), 3.0) for _ in range(12)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        errors = [getattr(outcome, "error", None) for outcome in outcomes]
        for outcome, error in zip(outcomes, errors):
            assert error in ("wamp.error.canceled", "wamp.error.no_such_procedure"), repr(outcome)
        assert "wamp.error.canceled" in errors, errors
        assert loop.time() - started < 1.5
        # the stuck session is closed and leaves the realm (its registration goes with it)
        try:
            await wait_until(lambda: stuck_id in left, 5.0, what="stuck session left the realm")
        except AssertionError as e:
            raise AssertionError(f"{e}; router log:\n{router.logs()[-1500:]}") from None
        assert await caller.call("wamp.registration.match", "com.test.stuck") is None
        assert await caller.call("wamp.session.count") == 3
        stuck_sock.close()

    run(main(), timeout=60)


def test_sigterm_with_a_stuck_client_still_exits(router_factory):
    router = router_factory("[limits]\nsession_queue_max = 8\n")

    async def main():
        stuck_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stuck_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck_sock.settimeout(5)
        stuck_sock.connect(router.addr["ws"])
        # a WebSocket session that subscribes and then never reads
        stuck = WebSocketClient.__new__(WebSocketClient)
        stuck.sock = stuck_sock
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        stuck_sock.sendall((f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                            f"Sec-WebSocket-Protocol: wamp.2.json\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            response += stuck_sock.recv(1)
        stuck._buffer, stuck.serializer = b"", "json"
        stuck.join()
        stuck.send([32, 1, {}, "com.test.flood"])
        assert stuck.recv()[0] == 33
        healthy = await connect(router)
        publisher = await connect(router, transport="rawsocket", serializer="msgpack")
        blob = "y" * 32 * 1024
        for i in range(300):
            publisher.publish("com.test.flood", i, blob)
        await publisher.publish("com.test.flood", "end", options=ACK)
        started = time.monotonic()
        code = await asyncio.to_thread(router.terminate, 15.0)
        elapsed = time.monotonic() - started
        assert code == 0, f"exit code {code}; log:\n{router.logs()}"
        assert elapsed < 6.0, f"shutdown with a stuck client took {elapsed:.1f} s"
        await wait_until(lambda: healthy.left.done(), 2.0, what="healthy session got GOODBYE")
        assert healthy.left.result().reason == "wamp.close.system_shutdown"
        stuck_sock.close()

    run(main(), timeout=60)


def test_killed_session_that_never_answers_goodbye_is_closed(router):
    async def main():
        admin = await connect(router)
        left = []
        await admin.subscribe(lambda sid, *rest: left.append(sid), "wamp.session.on_leave")
        mute = RawSocketClient(router.rawsocket, "json")
        mute_id = mute.join()[1]
        await admin.call("wamp.session.kill", mute_id, reason="com.example.out")
        goodbye = await asyncio.to_thread(mute.recv)
        assert goodbye[0] == 6 and goodbye[2] == "com.example.out", goodbye
        # no GOODBYE back: the router closes after its wait, and the session leaves
        assert await asyncio.to_thread(mute.is_closed, 4.0), "router kept the connection open"
        await wait_until(lambda: mute_id in left, 2.0, what="on_leave for the killed session")
        assert await admin.call("wamp.session.count") == 1

    run(main())
