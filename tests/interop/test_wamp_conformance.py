"""WAMP conformance details found by other implementations' clients (issue 12), with raw
WebSocket / RawSocket clients that send exactly the bytes under test:

- `null` Arguments / ArgumentsKw are absent (autobahn and Crossbar read them so; fox-wamp
  clients release a lock by publishing with `null` arguments), in PUBLISH, CALL, YIELD and
  ERROR, with every serializer; anything else that is not a list / dict stays a protocol
  violation.
- When the router ends a session (ABORT on a protocol violation, GOODBYE of a kill) while
  the client is still sending, the client still reads it: the router shuts its writing side
  and reads and drops input for a while (about a second) before closing, instead of closing
  with unread input, which resets the connection and loses what was not yet delivered.
"""

import asyncio
import socket
import threading
import time

import pytest

from test_sync_service import kv_publish
from wamp_client import RawSocketClient, WebSocketClient, assert_stays, connect, run, send_raw, wait_until

ABORT, GOODBYE, ERROR, PUBLISHED, SUBSCRIBED, EVENT = 3, 6, 8, 17, 33, 36
CALL, RESULT, REGISTERED, INVOCATION, YIELD = 48, 50, 65, 68, 70

SERIALIZERS = ["json", "msgpack", "cbor"]


def ws_client(router, serializer):
    c = WebSocketClient(router.addr["ws"], protocols=(f"wamp.2.{serializer}",))
    assert c.upgraded(), c.status_line
    c.join()
    return c


def expect(c, code, router):
    msg = c.recv()
    assert msg[0] == code, f"expected message type {code}, got {msg}; router log:\n{router.logs()}"
    return msg


@pytest.mark.parametrize("serializer", SERIALIZERS)
def test_null_arguments_are_absent(router, serializer):
    subscriber, publisher = ws_client(router, serializer), ws_client(router, serializer)
    subscriber.send([32, 1, {}, "com.null"])
    subscription = expect(subscriber, SUBSCRIBED, router)[2]
    publisher.send([16, 1, {"acknowledge": True}, "com.null", None])
    expect(publisher, PUBLISHED, router)
    event = expect(subscriber, EVENT, router)
    assert event[1] == subscription and event[4:] == [], f"an EVENT without arguments: {event}"
    publisher.send([16, 2, {"acknowledge": True}, "com.null", None, {"k": 1}])
    expect(publisher, PUBLISHED, router)
    event = expect(subscriber, EVENT, router)
    assert event[4:] == [[], {"k": 1}], event
    publisher.send([16, 3, {"acknowledge": True}, "com.null", [1], None])
    expect(publisher, PUBLISHED, router)
    assert expect(subscriber, EVENT, router)[4:] == [[1]]

    callee, caller = subscriber, publisher
    callee.send([64, 2, {}, "com.null.proc"])
    expect(callee, REGISTERED, router)
    caller.send([CALL, 4, {}, "com.null.proc", None, None])
    invocation = expect(callee, INVOCATION, router)
    assert invocation[4:] == [], f"an INVOCATION without arguments: {invocation}"
    callee.send([YIELD, invocation[1], {}, None, None])
    result = expect(caller, RESULT, router)
    assert result[1] == 4 and result[3:] == [], f"a RESULT without arguments: {result}"
    caller.send([CALL, 5, {}, "com.null.proc", None])
    invocation = expect(callee, INVOCATION, router)
    callee.send([ERROR, INVOCATION, invocation[1], {}, "com.example.failed", None, {"why": "x"}])
    error = expect(caller, ERROR, router)
    assert error[1:5] == [CALL, 5, {}, "com.example.failed"], error
    assert error[5:] == [[], {"why": "x"}], error

    # Anything else that is not a list (or a dict for ArgumentsKw) is still refused.
    publisher.send([16, 6, {"acknowledge": True}, "com.null", 5])
    abort = expect(publisher, ABORT, router)
    assert abort[2] == "wamp.error.protocol_violation", abort


def test_null_arguments_on_rawsocket(router):
    c = RawSocketClient(router.rawsocket, "msgpack")
    c.join()
    c.send([16, 1, {"acknowledge": True}, "com.null", None, None])
    assert c.recv()[0] == PUBLISHED


def test_a_null_arguments_publish_releases_a_lock(router):
    """The sync service: the holder releases its retained lock with a PUBLISH whose
    Arguments are `null` (as fox-wamp clients send it); the waiter gets the lock and the
    holder's session goes on."""

    async def main():
        holder, waiter = [await connect(router) for _ in range(2)]
        await kv_publish(holder, "lock.null", "holder", when=None, watch=True)
        waiting = kv_publish(waiter, "lock.null", "waiter", when=None, watch=True)
        await assert_stays(lambda: not waiting.done(), 0.3, "the lock is held")
        send_raw(holder, [16, 4242, {"retain": True}, "lock.null", None])
        await wait_until(waiting.done, what="the waiter gets the lock after the null-args release")
        assert waiting.exception() is None, waiting.exception()
        count = await holder.call("wamp.session.count")
        assert count == 2, "the releasing session is still joined"

    run(main())


RECEIVE_BUFFER_BYTES = 4096


def _raw_client(router, transport, monkeypatch):
    """A raw client whose socket has a small receive buffer: what the router sends it
    waits in the router's send buffer until it reads, as for a client on a slow link."""
    plain = socket.create_connection

    def small_receive_buffer(addr, timeout=None):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        sock.settimeout(timeout)
        sock.connect(addr)
        return sock

    with monkeypatch.context() as patched:
        patched.setattr(socket, "create_connection", small_receive_buffer)
        if transport == "websocket":
            c = WebSocketClient(router.addr["ws"], protocols=("wamp.2.json",))
            assert c.upgraded(), c.status_line
        else:
            c = RawSocketClient(router.rawsocket, "json")
    assert socket.create_connection is plain
    c.join_details = c.join()
    return c


def _flood_then_close(router, victim, provoke, expect_end):
    """A client busy receiving a backlog of events keeps sending while the router ends its
    session (`provoke` is called with the victim's send function, its session ID and
    another session's client, once the victim is sending); the client must read the
    router's last message (`expect_end` checks it), not a reset."""
    victim_id = victim.join_details[1]
    victim.send([32, 1, {}, "flood.x"])
    assert victim.recv()[0] == SUBSCRIBED
    publisher = RawSocketClient(router.rawsocket, "json")
    publisher.join()
    payload = "x" * 32_000
    for i in range(100):  # ~3 MB: more than the router's send buffer takes at once
        publisher.send([16, i + 1, {}, "flood.x", [payload]])
    publisher.send([16, 1000, {"acknowledge": True}, "flood.x", ["last"]])
    assert publisher.recv()[0] == PUBLISHED
    stop = threading.Event()
    sending = threading.Lock()  # whole frames: the test thread sends too

    def send(fields):
        with sending:
            victim.send(fields)

    def keep_sending():
        """A steady stream of PUBLISHes (about 1 MB/s) until the test ends."""
        try:
            while not stop.is_set():
                send([16, 1, {}, "other", ["y" * 1000]])
                time.sleep(0.001)
        except OSError:
            pass

    sender = threading.Thread(target=keep_sending, daemon=True)
    sender.start()
    try:
        provoke(send, victim_id, publisher)
        time.sleep(0.3)  # busy elsewhere: the router's writes to us back up meanwhile
        events = 0
        while True:
            try:
                msg = victim.recv()
            except Exception as e:  # noqa: BLE001 - the failure names what came instead
                raise AssertionError(f"after {events} events: {e!r} instead of the router's last message; "
                                     f"router log:\n{router.logs()}") from None
            if msg[0] == EVENT:
                events += 1
                continue
            expect_end(msg)
            return events
    finally:
        stop.set()
        sender.join(5)


@pytest.mark.parametrize("transport", ["rawsocket", "websocket"])
def test_abort_reaches_a_client_that_keeps_sending(router, transport, monkeypatch):
    """The router answers the violation with ABORT at once (events still queued for the
    session are dropped with it)."""

    def violate(send, _id, _other):
        send([999, 1, {}])

    def is_abort(msg):
        assert msg[0] == ABORT and msg[2] == "wamp.error.protocol_violation", msg

    victim = _raw_client(router, transport, monkeypatch)
    _flood_then_close(router, victim, violate, is_abort)


@pytest.mark.parametrize("transport", ["rawsocket", "websocket"])
def test_goodbye_reaches_a_killed_client_that_keeps_sending(router, transport, monkeypatch):
    """The GOODBYE of wamp.session.kill comes after the events queued before it."""

    def kill(_send, victim_id, admin):
        admin.send([CALL, 7, {}, "wamp.session.kill", [victim_id]])

    def is_goodbye(msg):
        assert msg[0] == GOODBYE, msg

    victim = _raw_client(router, transport, monkeypatch)
    events = _flood_then_close(router, victim, kill, is_goodbye)
    assert events == 101, f"{events} events before the GOODBYE"
