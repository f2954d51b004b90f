"""WAMP remote procedure calls through autobahn-python: results over every transport and
serializer, errors passed through, pattern and shared registrations, progressive results,
cancellation modes, router-enforced timeouts, caller disclosure, and callers released when
their callee goes away."""

import asyncio

import pytest
from autobahn.wamp import message
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, CallResult, RegisterOptions

from wamp_client import (TRANSPORTS, abort_transport, assert_stays, connect, received_of, run,
                         wait_until)


def call_request_ids(session, procedure):
    return [m.request for m in session.sent if isinstance(m, message.Call) and m.procedure == procedure]


def errors_for(session, request):
    return [m for m in received_of(session, message.Error) if m.request == request]


@pytest.mark.parametrize("transport,serializer", TRANSPORTS)
def test_call_roundtrip(router, transport, serializer):
    async def main():
        callee = await connect(router, transport=transport, serializer=serializer)
        caller = await connect(router, transport=transport, serializer=serializer)

        def echo(*args, **kwargs):
            return CallResult(*args, **kwargs)

        await callee.register(echo, "com.test.echo")
        await callee.register(lambda a, b: a * b, "com.test.mul")
        assert await caller.call("com.test.mul", 6, 7) == 42
        args = [1, 2**53, -3.5, "ü", None, True, [1, {"x": [b"\x00"]}], b"\x00\x10\xff"]
        kwargs = {"a": {"b": [1, 2]}, "bin": b"\xfe", "s": ""}
        result = await caller.call("com.test.echo", *args, **kwargs)
        assert isinstance(result, CallResult)
        assert list(result.results) == args
        assert result.kwresults == kwargs
        assert await caller.call("com.test.echo", "only") == "only"
        caller.leave()
        callee.leave()
        await caller.disconnected
        await callee.disconnected

    run(main())


def test_no_callee_gives_no_such_procedure(router):
    async def main():
        caller = await connect(router)
        with pytest.raises(ApplicationError) as raised:
            await caller.call("com.test.nobody")
        assert raised.value.error == "wamp.error.no_such_procedure"

    run(main())


@pytest.mark.parametrize("serializer", ["json", "cbor"])
def test_application_error_reaches_caller_unchanged(router, serializer):
    async def main():
        callee = await connect(router, serializer=serializer)
        caller = await connect(router, serializer="msgpack")

        def fail(*args, **kwargs):
            raise ApplicationError("com.example.error.bad_thing", 1, "two", [3], key={"v": 4}, other=None)

        await callee.register(fail, "com.test.fail")
        with pytest.raises(ApplicationError) as raised:
            await caller.call("com.test.fail")
        assert raised.value.error == "com.example.error.bad_thing"
        assert list(raised.value.args) == [1, "two", [3]]
        assert raised.value.kwargs == {"key": {"v": 4}, "other": None}

    run(main())


def test_unregister_removes_the_procedure(router):
    async def main():
        callee = await connect(router)
        caller = await connect(router)
        registration = await callee.register(lambda: "here", "com.test.gone")
        assert await caller.call("com.test.gone") == "here"
        await registration.unregister()
        with pytest.raises(ApplicationError) as raised:
            await caller.call("com.test.gone")
        assert raised.value.error == "wamp.error.no_such_procedure"

    run(main())


def test_pattern_registrations_and_precedence(router):
    async def main():
        callee = await connect(router)
        caller = await connect(router)

        def handler(name):
            def invoked(*args, details=None):
                return [name, details.procedure]
            return invoked

        opts = lambda match=None: RegisterOptions(match=match, details_arg="details")
        await callee.register(handler("exact"), "com.test.p.exact", options=opts())
        await callee.register(handler("prefix"), "com.test.p", options=opts("prefix"))
        await callee.register(handler("longer-prefix"), "com.test.p.deep", options=opts("prefix"))
        await callee.register(handler("wildcard"), "com.test..w", options=opts("wildcard"))
        assert (await caller.call("com.test.p.exact"))[0] == "exact"
        # an exact registration's INVOCATION carries no details.procedure (autobahn fills it in)
        assert received_of(callee, message.Invocation)[-1].procedure is None
        assert await caller.call("com.test.p.other") == ["prefix", "com.test.p.other"]
        assert await caller.call("com.test.p.deep.er") == ["longer-prefix", "com.test.p.deep.er"]
        assert await caller.call("com.test.p.w") == ["prefix", "com.test.p.w"]
        assert await caller.call("com.test.x.w") == ["wildcard", "com.test.x.w"]
        assert received_of(callee, message.Invocation)[-1].procedure == "com.test.x.w"
        with pytest.raises(ApplicationError) as raised:
            await caller.call("com.test.x.y.w")
        assert raised.value.error == "wamp.error.no_such_procedure"

    run(main())


def test_second_single_registration_is_refused(router):
    async def main():
        a = await connect(router)
        b = await connect(router)
        await a.register(lambda: "a", "com.test.single")
        with pytest.raises(ApplicationError) as raised:
            await b.register(lambda: "b", "com.test.single")
        assert raised.value.error == "wamp.error.procedure_already_exists"
        with pytest.raises(ApplicationError) as raised:
            await b.register(lambda: "b", "com.test.single", options=RegisterOptions(invoke="roundrobin"))
        assert raised.value.error in ("wamp.error.procedure_already_exists",
                                      "wamp.error.procedure_exists_with_different_invocation_policy")

    run(main())


def test_shared_registration_with_different_policy_is_refused(router):
    async def main():
        a = await connect(router)
        b = await connect(router)
        await a.register(lambda: "a", "com.test.shared", options=RegisterOptions(invoke="roundrobin"))
        with pytest.raises(ApplicationError) as raised:
            await b.register(lambda: "b", "com.test.shared", options=RegisterOptions(invoke="random"))
        assert raised.value.error == "wamp.error.procedure_exists_with_different_invocation_policy"

    run(main())


@pytest.mark.parametrize("policy,expected", [
    ("roundrobin", ["c0", "c1", "c2", "c0", "c1", "c2"]),
    ("first", ["c0"] * 6),
    ("last", ["c2"] * 6),
])
def test_invocation_policy(router, policy, expected):
    async def main():
        caller = await connect(router)
        callees = []
        for i in range(3):
            callee = await connect(router)
            await callee.register(lambda name=f"c{i}": name, "com.test.shared",
                                  options=RegisterOptions(invoke=policy))
            callees.append(callee)
        got = [await caller.call("com.test.shared") for _ in range(6)]
        assert got == expected
        # the first callee leaves: the others go on serving
        callees[0].leave()
        await callees[0].disconnected
        after = {await caller.call("com.test.shared") for _ in range(4)}
        assert "c0" not in after and after
        if policy == "first":
            assert after == {"c1"}
        if policy == "last":
            assert after == {"c2"}

    run(main())


def test_random_policy_uses_every_callee(router):
    async def main():
        caller = await connect(router)
        for i in range(2):
            callee = await connect(router)
            await callee.register(lambda name=f"c{i}": name, "com.test.random",
                                  options=RegisterOptions(invoke="random"))
        got = [await caller.call("com.test.random") for _ in range(40)]
        assert set(got) == {"c0", "c1"}, got

    run(main())


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_progressive_results(router, serializer):
    async def main():
        callee = await connect(router, serializer=serializer)
        caller = await connect(router, transport="rawsocket", serializer=serializer)

        async def count(n, details=None):
            assert details.progress is not None, "receive_progress not forwarded to the callee"
            for i in range(n):
                details.progress(i, step=i)
            return "done"

        await callee.register(count, "com.test.count", options=RegisterOptions(details_arg="details"))
        progress = []
        result = await caller.call("com.test.count", 4,
                                   options=CallOptions(on_progress=lambda *a, **kw: progress.append((a, kw))))
        assert result == "done"
        assert progress == [((i,), {"step": i}) for i in range(4)]
        # without receive_progress the callee sees no progress callable, and only the final result arrives
        seen = []

        async def check(details=None):
            seen.append(details.progress)
            return "final"

        await callee.register(check, "com.test.noprogress", options=RegisterOptions(details_arg="details"))
        assert await caller.call("com.test.noprogress") == "final"
        assert seen == [None]

    run(main())


async def slow_callee(router, procedure, **connect_args):
    """A callee whose procedure waits until released; records start, cancel and finish."""
    callee = await connect(router, **connect_args)
    state = {"started": 0, "cancelled": 0, "finished": 0, "release": asyncio.Event()}

    async def slow(*args):
        state["started"] += 1
        try:
            await asyncio.wait_for(state["release"].wait(), 20)
        except asyncio.CancelledError:
            state["cancelled"] += 1
            raise
        state["finished"] += 1
        return "late"

    await callee.register(slow, procedure)
    return callee, state


def test_cancel_kill(router):
    async def main():
        callee, state = await slow_callee(router, "com.test.slow")
        caller = await connect(router)
        call = asyncio.ensure_future(caller.call("com.test.slow"))
        await wait_until(lambda: state["started"] == 1, what="invocation started")
        [request] = call_request_ids(caller, "com.test.slow")
        call.cancel()
        await wait_until(lambda: received_of(callee, message.Interrupt), what="INTERRUPT at the callee")
        interrupt = received_of(callee, message.Interrupt)[0]
        assert interrupt.mode == "kill"
        await wait_until(lambda: state["cancelled"] == 1, what="callee coroutine cancelled")
        await wait_until(lambda: errors_for(caller, request), what="ERROR at the caller")
        [error] = errors_for(caller, request)
        callee_said = [m.error for m in callee.sent if isinstance(m, message.Error)]
        assert error.error == "wamp.error.canceled", \
            f"caller got {error.error} {error.args}; the callee's ERROR for the INVOCATION was {callee_said}"
        assert error.request_type == message.Call.MESSAGE_TYPE

    run(main())


def test_cancel_skip(router):
    async def main():
        callee, state = await slow_callee(router, "com.test.slow")
        caller = await connect(router)
        caller.extra_options[message.Cancel] = {"mode": "skip"}
        call = asyncio.ensure_future(caller.call("com.test.slow"))
        await wait_until(lambda: state["started"] == 1, what="invocation started")
        [request] = call_request_ids(caller, "com.test.slow")
        call.cancel()
        await wait_until(lambda: errors_for(caller, request), what="ERROR at the caller")
        assert errors_for(caller, request)[0].error == "wamp.error.canceled"
        await assert_stays(lambda: not received_of(callee, message.Interrupt), 0.3, "no INTERRUPT for skip")
        # the callee finishes; its late YIELD is dropped
        state["release"].set()
        await wait_until(lambda: state["finished"] == 1, what="callee finished")
        await assert_stays(lambda: not [m for m in received_of(caller, message.Result) if m.request == request],
                           0.3, "no RESULT after skip")
        assert len(errors_for(caller, request)) == 1
        # both sessions still work
        await callee.register(lambda: "ok", "com.test.after")
        assert await caller.call("com.test.after") == "ok"

    run(main())


def test_cancel_killnowait(router):
    async def main():
        callee, state = await slow_callee(router, "com.test.slow")
        caller = await connect(router)
        caller.extra_options[message.Cancel] = {"mode": "killnowait"}
        call = asyncio.ensure_future(caller.call("com.test.slow"))
        await wait_until(lambda: state["started"] == 1, what="invocation started")
        [request] = call_request_ids(caller, "com.test.slow")
        call.cancel()
        await wait_until(lambda: errors_for(caller, request), what="ERROR at the caller")
        assert errors_for(caller, request)[0].error == "wamp.error.canceled"
        await wait_until(lambda: received_of(callee, message.Interrupt), what="INTERRUPT at the callee")
        assert received_of(callee, message.Interrupt)[0].mode == "killnowait"
        await wait_until(lambda: state["cancelled"] == 1, what="callee coroutine cancelled")
        await assert_stays(lambda: len(errors_for(caller, request)) == 1, 0.3, "exactly one ERROR")

    run(main())


def test_router_enforces_call_timeout(router):
    async def main():
        callee, state = await slow_callee(router, "com.test.slow")
        caller = await connect(router)
        caller.extra_options[message.Call] = {"timeout": 300}
        loop = asyncio.get_event_loop()
        started = loop.time()
        with pytest.raises(ApplicationError) as raised:
            await asyncio.wait_for(caller.call("com.test.slow"), 5)
        elapsed = loop.time() - started
        assert raised.value.error == "wamp.error.timeout"
        assert 0.25 <= elapsed < 2.0, f"timeout after {elapsed:.2f} s, asked for 0.3 s"
        await wait_until(lambda: received_of(callee, message.Interrupt), what="INTERRUPT at the callee")
        await wait_until(lambda: state["cancelled"] == 1, what="callee coroutine cancelled by the INTERRUPT")
        assert state["finished"] == 0

    run(main())


def test_disclose_me_sets_caller_details(router):
    async def main():
        callee = await connect(router)
        caller = await connect(router, authid="bob", transport="rawsocket", serializer="cbor")

        def who(details=None):
            return [details.caller, details.caller_authid, details.caller_authrole]

        await callee.register(who, "com.test.who", options=RegisterOptions(details_arg="details"))
        assert await caller.call("com.test.who") == [None, None, None]
        caller.extra_options[message.Call] = {"disclose_me": True}
        assert await caller.call("com.test.who") == [caller.session_id, "bob", "anonymous"]

    run(main())


@pytest.mark.parametrize("how", ["goodbye", "abort-websocket", "abort-rawsocket"])
def test_pending_callers_get_error_when_callee_goes(router, how):
    async def main():
        transport = "rawsocket" if how == "abort-rawsocket" else "websocket"
        callee, state = await slow_callee(router, "com.test.slow", transport=transport)
        caller = await connect(router)
        other_caller = await connect(router, transport="rawsocket", serializer="msgpack")
        calls = [asyncio.ensure_future(c.call("com.test.slow", i))
                 for i, c in enumerate([caller, caller, other_caller])]
        await wait_until(lambda: state["started"] == 3, what="three invocations started")
        loop = asyncio.get_event_loop()
        started = loop.time()
        if how == "goodbye":
            callee.leave()
        else:
            abort_transport(callee)
        done, _ = await asyncio.wait(calls, timeout=1.0)
        elapsed = loop.time() - started
        assert len(done) == 3, f"only {len(done)} of 3 callers answered within 1 s"
        for call in calls:
            error = call.exception()
            assert isinstance(error, ApplicationError), repr(error)
            assert error.error == "wamp.error.canceled"
        assert elapsed < 1.0
        # the procedure is gone with its callee
        with pytest.raises(ApplicationError) as raised:
            await caller.call("com.test.slow")
        assert raised.value.error == "wamp.error.no_such_procedure"

    run(main())


def test_callee_gets_interrupt_when_caller_goes(router):
    async def main():
        callee, state = await slow_callee(router, "com.test.slow")
        caller = await connect(router, transport="rawsocket")
        asyncio.ensure_future(caller.call("com.test.slow"))
        await wait_until(lambda: state["started"] == 1, what="invocation started")
        abort_transport(caller)
        await wait_until(lambda: received_of(callee, message.Interrupt), what="INTERRUPT at the callee")
        await wait_until(lambda: state["cancelled"] == 1, what="callee coroutine cancelled")
        # the callee session is still fine
        await callee.register(lambda: 1, "com.test.still")
        other = await connect(router)
        assert await other.call("com.test.still") == 1

    run(main())


def test_registering_in_wamp_namespace_is_refused(router):
    async def main():
        callee = await connect(router)
        with pytest.raises(ApplicationError) as raised:
            await callee.register(lambda: 0, "wamp.session.count")
        assert raised.value.error == "wamp.error.not_authorized"

    run(main())


def raw_callee(router, procedure, call_canceling=True):
    """A RawSocket callee driven by hand: returns (client, registration ID)."""
    from wamp_client import RawSocketClient
    c = RawSocketClient(router.rawsocket, "json")
    assert c.handshake()[0] == 0x7F
    features = {"call_canceling": True} if call_canceling else {}
    c.send([1, "realm1", {"roles": {"callee": {"features": features}}}])
    assert c.recv()[0] == 2
    c.send([64, 1, {}, procedure])
    registered = c.recv()
    assert registered[:2] == [65, 1], registered
    return c, registered[2]


def test_cancel_kill_waits_for_the_callee_then_reports_canceled(router):
    async def main():
        callee, registration = raw_callee(router, "com.test.raw")
        caller = await connect(router)
        call = asyncio.ensure_future(caller.call("com.test.raw", 1))
        invocation = await asyncio.to_thread(callee.recv)
        assert invocation[0] == 68 and invocation[2] == registration and invocation[4] == [1], invocation
        [request] = call_request_ids(caller, "com.test.raw")
        call.cancel()
        interrupt = await asyncio.to_thread(callee.recv)
        assert interrupt[:2] == [69, invocation[1]], interrupt
        assert interrupt[2].get("mode") == "kill", interrupt
        await assert_stays(lambda: not errors_for(caller, request), 0.3,
                           "kill mode: no ERROR to the caller before the callee answers")
        callee.send([70, invocation[1], {}, ["finished anyway"]])
        await wait_until(lambda: errors_for(caller, request), what="ERROR at the caller")
        assert errors_for(caller, request)[0].error == "wamp.error.canceled"
        await assert_stays(lambda: not [m for m in received_of(caller, message.Result) if m.request == request],
                           0.2, "no RESULT after a canceled call")

    run(main())


def test_cancel_with_callee_without_call_canceling(router):
    """A callee that did not announce call_canceling gets no INTERRUPT; the caller is
    answered at once (the router falls back to skip)."""

    async def main():
        callee, _ = raw_callee(router, "com.test.raw", call_canceling=False)
        caller = await connect(router)
        call = asyncio.ensure_future(caller.call("com.test.raw"))
        invocation = await asyncio.to_thread(callee.recv)
        assert invocation[0] == 68
        [request] = call_request_ids(caller, "com.test.raw")
        call.cancel()
        await wait_until(lambda: errors_for(caller, request), 2.0, what="ERROR at the caller")
        assert errors_for(caller, request)[0].error == "wamp.error.canceled"
        callee.sock.settimeout(0.3)
        with pytest.raises(OSError):  # socket.timeout: nothing arrives
            frame = callee.recv_frame()
            raise AssertionError(f"callee without call_canceling got {frame}")

    run(main())


def test_call_timeout_is_capped_by_the_limit(router_factory):
    router = router_factory("[limits]\ncall_timeout_max_ms = 200\n")

    async def main():
        callee, state = await slow_callee(router, "com.test.slow")
        caller = await connect(router)
        caller.extra_options[message.Call] = {"timeout": 5000}
        loop = asyncio.get_event_loop()
        started = loop.time()
        with pytest.raises(ApplicationError) as raised:
            await asyncio.wait_for(caller.call("com.test.slow"), 4)
        assert raised.value.error == "wamp.error.timeout"
        elapsed = loop.time() - started
        assert 0.15 <= elapsed < 1.5, f"timed out after {elapsed:.2f} s; limit 0.2 s"

    run(main())


def test_a_session_can_call_its_own_procedure(router):
    async def main():
        s = await connect(router, transport="rawsocket", serializer="msgpack")
        await s.register(lambda x: x + 1, "com.test.self")
        assert await s.call("com.test.self", 41) == 42

    run(main())


def test_same_session_cannot_join_a_shared_registration_twice(router):
    async def main():
        a = await connect(router)
        await a.register(lambda: 1, "com.test.twice", options=RegisterOptions(invoke="roundrobin"))
        with pytest.raises(ApplicationError) as raised:
            await a.register(lambda: 2, "com.test.twice", options=RegisterOptions(invoke="roundrobin"))
        assert raised.value.error == "wamp.error.procedure_already_exists"

    run(main())


@pytest.mark.parametrize("transport,serializer", [("websocket", "json"), ("rawsocket", "msgpack")])
def test_large_arguments_near_the_default_limit(router, transport, serializer):
    async def main():
        callee = await connect(router, transport=transport, serializer=serializer)
        caller = await connect(router, transport=transport, serializer=serializer)
        await callee.register(lambda s: s[::-1], "com.test.reverse")
        big = "ab" * 450_000  # 900 kB, under the 1 MiB default
        assert await caller.call("com.test.reverse", big) == big[::-1]

    run(main())


def test_many_concurrent_calls_are_matched_to_their_results(router):
    async def main():
        callees = [await connect(router), await connect(router, transport="rawsocket", serializer="cbor")]

        async def delayed(i):
            await asyncio.sleep((i * 7 % 10) / 1000)
            return i * 2

        for callee in callees:
            await callee.register(delayed, "com.test.many", options=RegisterOptions(invoke="roundrobin"))
        callers = [await connect(router), await connect(router, transport="rawsocket", serializer="msgpack")]
        calls = [callers[i % 2].call("com.test.many", i) for i in range(200)]
        assert await asyncio.gather(*calls) == [i * 2 for i in range(200)]

    run(main())


def test_register_concurrency_queues_excess_calls_in_order(router):
    """fox-wamp `concurrency`: at most N invocations in flight per callee; excess calls
    queue first in, first out, and run as slots free up."""
    import asyncio as _asyncio
    from autobahn.wamp import message as _m
    from autobahn.wamp.types import RegisterOptions as _RegisterOptions

    async def main():
        callee = await connect(router)
        caller = await connect(router)
        running = []
        peak = [0]
        order = []

        async def work(n):
            running.append(n)
            peak[0] = max(peak[0], len(running))
            order.append(n)
            await _asyncio.sleep(0.05)
            running.remove(n)
            return n

        callee.extra_options[_m.Register] = {"concurrency": 2}
        await callee.register(work, "com.conc.work", options=_RegisterOptions())
        callee.extra_options.pop(_m.Register)
        results = await _asyncio.gather(*[caller.call("com.conc.work", i) for i in range(8)])
        assert results == list(range(8))
        assert peak[0] == 2, f"at most 2 in flight, saw {peak[0]}"
        assert order == list(range(8)), "queued calls run first in, first out"

    run(main())
