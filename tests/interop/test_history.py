"""Message history: SUBSCRIBE `after` (replay then live, no gap, no duplicate), `filter`,
`snapshot`, and the spec's event history (`wamp.subscription.get_events`)."""

import asyncio

from autobahn.wamp import message as wamp_message
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from wamp_client import connect, received_of, run, wait_until

ACK = PublishOptions(acknowledge=True)


def subscribe_with(session, handler, topic, **extra):
    session.extra_options[wamp_message.Subscribe] = extra
    try:
        return asyncio.ensure_future(session.subscribe(handler, topic, options=SubscribeOptions(details=True)))
    finally:
        session.extra_options.pop(wamp_message.Subscribe, None)


def test_after_replays_then_goes_live_without_gap_or_duplicate(router):
    async def main():
        pub = await connect(router)
        ids = [(await pub.publish("h.t", i, options=ACK)).id for i in range(20)]
        sub = await connect(router)
        got = []
        await subscribe_with(sub, lambda v, details=None: got.append((v, details.publication)), "h.t", after=ids[9])
        live = []

        async def publish_more():
            for i in range(20, 40):
                live.append((await pub.publish("h.t", i, options=ACK)).id)

        await publish_more()
        await wait_until(lambda: len(got) >= 30, what="replayed and live events")
        await asyncio.sleep(0.1)
        assert [v for v, _ in got] == list(range(10, 40)), "no gap, no duplicate, in order"
        assert [p for _, p in got] == ids[10:] + live

    run(main())


def test_after_with_a_concurrent_publisher_has_no_gap(router):
    async def main():
        pub = await connect(router)
        stop = False
        sent = []

        async def flood():
            i = 0
            while not stop:
                sent.append((await pub.publish("h.c", i, options=ACK)).id)
                i += 1

        task = asyncio.ensure_future(flood())
        await wait_until(lambda: len(sent) > 50, what="publisher running")
        sub = await connect(router)
        got = []
        await subscribe_with(sub, lambda v, details=None: got.append(details.publication), "h.c", after=sent[20])
        await asyncio.sleep(0.3)
        stop = True
        await task
        await wait_until(lambda: got and got[-1] == sent[-1], what="the last event")
        expected = [p for p in sent if p > sent[20]]
        assert got == expected

    run(main())


def test_filter_and_snapshot(router):
    async def main():
        pub = await connect(router)
        for owner in ["a", "b", "a"]:
            await pub.publish("h.f", owner=owner, options=PublishOptions(acknowledge=True))
        sub = await connect(router)
        got = []
        await subscribe_with(sub, lambda owner=None, details=None: got.append(owner), "h.f",
                             after=0, filter={"owner": "a"})
        await wait_until(lambda: len(got) == 2, what="replayed matching events")
        await pub.publish("h.f", owner="b", options=ACK)
        await pub.publish("h.f", owner="a", options=ACK)
        await wait_until(lambda: len(got) == 3, what="live matching event")
        assert got == ["a", "a", "a"]
        snap = await connect(router)
        seen = []
        await subscribe_with(snap, lambda owner=None, details=None: seen.append(owner), "h.f", after=0, snapshot=True)
        await wait_until(lambda: received_of(snap, wamp_message.Unsubscribed), what="the snapshot ends")
        await pub.publish("h.f", owner="z", options=ACK)
        await asyncio.sleep(0.2)
        assert seen == ["a", "b", "a", "b", "a"], "snapshot replays, then no live events"

    run(main())


def test_retained_state_replays_values_then_every_live_event(router):
    """fox-wamp `retainedState`: the stored values first (details.retained), then every live
    event, retained or not."""
    async def main():
        pub = await connect(router)
        await pub.publish("rs.a", "a1", options=PublishOptions(acknowledge=True, retain=True))
        await pub.publish("rs.b", "b1", options=PublishOptions(acknowledge=True, retain=True))
        await pub.publish("rs.a", "plain", options=ACK)  # not retained: not part of the state
        sub = await connect(router)
        got = []
        await subscribe_with(sub, lambda v, details=None: got.append((details.topic, v, bool(details.retained))),
                             "rs", match="prefix", retainedState=True)
        await wait_until(lambda: len(got) == 2, what="the retained state")
        await pub.publish("rs.a", "live", options=ACK)
        await pub.publish("rs.b", "b2", options=PublishOptions(acknowledge=True, retain=True))
        await wait_until(lambda: len(got) == 4, what="live events")
        assert got == [("rs.a", "a1", True), ("rs.b", "b1", True),
                       ("rs.a", "live", False), ("rs.b", "b2", False)]

    run(main())


def test_retained_replays_values_then_only_state_changes(router):
    """fox-wamp `retained`: the stored values, then only live publishes that change the
    state (retained ones); plain events on the same topics are not delivered."""
    async def main():
        pub = await connect(router)
        await pub.publish("rt.a", "a1", options=PublishOptions(acknowledge=True, retain=True))
        sub = await connect(router)
        got = []
        await subscribe_with(sub, lambda *v, details=None: got.append((v, bool(details.retained))),
                             "rt", match="prefix", retained=True)
        await wait_until(lambda: len(got) == 1, what="the retained state")
        await pub.publish("rt.a", "plain", options=ACK)
        await pub.publish("rt.a", "a2", options=PublishOptions(acknowledge=True, retain=True))
        await pub.publish("rt.a", options=PublishOptions(acknowledge=True, retain=True))  # clears it
        await wait_until(lambda: len(got) == 3, what="state changes")
        await asyncio.sleep(0.1)
        assert got == [(("a1",), True), (("a2",), False), ((), False)]

    run(main())


def test_after_then_retained_state_in_that_order(router):
    """`after` with `retainedState`: the history after the ID, then the state as of the
    subscription's start (so applying them in order ends at the current state), then live.
    fox-wamp's event IDs are strings: a decimal string is accepted for `after`."""
    async def main():
        pub = await connect(router)
        first = (await pub.publish("ra.k", 1, options=PublishOptions(acknowledge=True, retain=True))).id
        await pub.publish("ra.k", 2, options=PublishOptions(acknowledge=True, retain=True))
        await pub.publish("ra.k", 3, options=PublishOptions(acknowledge=True, retain=True))
        sub = await connect(router)
        got = []
        await subscribe_with(sub, lambda v, details=None: got.append((v, bool(details.retained))),
                             "ra.k", after=str(first), retainedState=True)
        await wait_until(lambda: len(got) == 3, what="history then state")
        await pub.publish("ra.k", 4, options=ACK)
        await wait_until(lambda: len(got) == 4, what="live event")
        assert got == [(2, False), (3, False), (3, True), (4, False)]

    run(main())


def test_bad_after_is_refused(router):
    async def main():
        sub = await connect(router)
        for bad in ["yesterday", -5, 1.5]:
            try:
                await subscribe_with(sub, lambda *a: None, "h.bad", after=bad)
            except ApplicationError as e:
                assert e.error == "wamp.error.invalid_argument", e
            else:
                raise AssertionError(f"after={bad!r} was accepted")

    run(main())


def test_get_events(router):
    async def main():
        pub = await connect(router)
        sub = await connect(router)
        subscription = await sub.subscribe(lambda *a: None, "h.g")
        for i in range(5):
            await pub.publish("h.g", i, options=ACK)
        events = await sub.call("wamp.subscription.get_events", subscription.id, 3)
        assert [e["args"] for e in events] == [[2], [3], [4]]

    run(main())


def test_after_reads_older_history_from_the_store(router_factory, tmp_path):
    config = "[limits]\nhistory_max_messages = 5\n"
    r = router_factory(config, args=["--data", str(tmp_path / "data")])

    async def main():
        pub = await connect(r)
        ids = [(await pub.publish("h.s", i, options=ACK)).id for i in range(30)]
        sub = await connect(r)
        got = []
        await subscribe_with(sub, lambda v, details=None: got.append(v), "h.s", after=ids[2])
        await wait_until(lambda: len(got) == 27, what="store + memory replay")
        assert got == list(range(3, 30))

    run(main())


def test_numeric_retain_from_fox_wamp_clients(router):
    """fox-wamp's engines test `retain` for truthiness: a number other than 0 retains, 0 does
    not (the spec's form is a bool)."""
    async def main():
        pub = await connect(router)
        for topic, value in [("nr.yes", 100), ("nr.no", 0)]:
            pub.extra_options[wamp_message.Publish] = {"retain": value}
            await pub.publish(topic, value, options=ACK)
        pub.extra_options.pop(wamp_message.Publish, None)
        sub = await connect(router)
        got = []
        await sub.subscribe(lambda v, details=None: got.append((details.topic, v)), "nr.",
                            options=SubscribeOptions(match="prefix", get_retained=True, details=True))
        await wait_until(lambda: got, what="the retained value")
        await asyncio.sleep(0.2)
        assert got == [("nr.yes", 100)]

    run(main())
