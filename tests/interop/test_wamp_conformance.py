"""WAMP conformance details found by other implementations' clients (issue 12), with raw
WebSocket / RawSocket clients that send exactly the bytes under test:

- `null` Arguments / ArgumentsKw are absent (autobahn and Crossbar read them so; fox-wamp
  clients release a lock by publishing with `null` arguments), in PUBLISH, CALL, YIELD and
  ERROR, with every serializer; anything else that is not a list / dict stays a protocol
  violation.
"""

import asyncio

import pytest

from test_sync_service import kv_publish
from wamp_client import RawSocketClient, WebSocketClient, assert_stays, connect, run, send_raw, wait_until

ABORT, ERROR, PUBLISHED, SUBSCRIBED, EVENT = 3, 8, 17, 33, 36
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
