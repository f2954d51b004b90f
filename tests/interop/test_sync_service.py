"""The retained-key sync service with fox-wamp's option names: `when`, `watch`, `will`.
A mutex is publish(key, holder, retain, when=null, watch=true, will=null), released by a
publish with no arguments; a dead holder's will frees it."""

import asyncio

from autobahn.wamp import message as wamp_message
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from wamp_client import abort_transport, assert_stays, connect, run, wait_until

MISSING = object()


def kv_publish(session, topic, *args, when=MISSING, watch=None, will=MISSING, **kwargs):
    """Publishes with retain + acknowledge and fox-wamp's extra options; returns the future."""
    extra = {}
    if when is not MISSING:
        extra["when"] = when
    if watch is not None:
        extra["watch"] = watch
    if will is not MISSING:
        extra["will"] = will
    session.extra_options[wamp_message.Publish] = extra
    try:
        return asyncio.ensure_future(session.publish(
            topic, *args, options=PublishOptions(acknowledge=True, retain=True), **kwargs))
    finally:
        session.extra_options.pop(wamp_message.Publish, None)


def lock(session, key, holder):
    return kv_publish(session, key, holder, when=None, watch=True, will=None)


def test_mutex_is_first_come_first_served(router):
    async def main():
        a, b, c = [await connect(router) for _ in range(3)]
        await lock(a, "lock.m", "a")
        b_lock = lock(b, "lock.m", "b")
        await asyncio.sleep(0.05)
        c_lock = lock(c, "lock.m", "c")
        await assert_stays(lambda: not b_lock.done() and not c_lock.done(), 0.3, "lock is held by a")
        await kv_publish(a, "lock.m")  # release: no arguments clears the key
        await wait_until(b_lock.done, what="b gets the lock after a releases")
        assert not c_lock.done(), "c queued after b"
        await kv_publish(b, "lock.m")
        await wait_until(c_lock.done, what="c gets the lock after b releases")

    run(main())


def test_refused_when_is_never_delivered(router):
    async def main():
        owner, other, watcher = [await connect(router) for _ in range(3)]
        seen = []
        await watcher.subscribe(lambda *a, **k: seen.append((a, k)), "kv.x")
        await kv_publish(owner, "kv.x", owner="a", n=1, when=None)
        try:
            await kv_publish(other, "kv.x", owner="b", when=None)
            raise AssertionError("a write whose when does not hold was accepted")
        except ApplicationError as e:
            assert e.error == "wamp.error.invalid_argument"
        await kv_publish(other, "kv.x", owner="a", n=2, when={"owner": "a"})  # subset match
        try:
            await kv_publish(other, "kv.x", owner="c", when={"owner": "b"})
            raise AssertionError("subset mismatch accepted")
        except ApplicationError:
            pass
        await wait_until(lambda: len(seen) == 2, what="the two accepted writes")
        await assert_stays(lambda: len(seen) == 2, 0.3, "refused writes stay undelivered")
        assert [k["owner"] for _, k in seen] == ["a", "a"]

    run(main())


def test_will_frees_the_lock_of_a_dead_holder_within_a_second(router):
    async def main():
        holder, waiter, observer = [await connect(router) for _ in range(3)]
        await lock(holder, "lock.w", "holder")
        waiting = lock(waiter, "lock.w", "waiter")
        await asyncio.sleep(0.1)
        abort_transport(holder)  # kill: no GOODBYE
        await wait_until(waiting.done, timeout=1.0, what="the waiter gets the lock within 1 s")
        got = []
        await observer.subscribe(lambda v, details=None: got.append(v), "lock.w",
                                 options=SubscribeOptions(get_retained=True, details=True))
        await wait_until(lambda: got == ["waiter"], what="the retained value is the new holder")

    run(main())


def test_will_is_not_applied_on_goodbye_and_is_cancelled_by_a_later_write(router):
    async def main():
        a = await connect(router)
        await kv_publish(a, "kv.g", "held", will="released")
        a.leave()
        await a.disconnected
        b = await connect(router)
        got = []
        await b.subscribe(lambda v, details=None: got.append(v), "kv.g",
                          options=SubscribeOptions(get_retained=True, details=True))
        await wait_until(lambda: got == ["held"], what="no will after a clean GOODBYE")
        c = await connect(router)
        await kv_publish(c, "kv.c", "v1", will="c-will")
        await kv_publish(b, "kv.c", "v2")  # a later write by another cancels c's will
        abort_transport(c)
        seen = []
        await b.subscribe(lambda v: seen.append(v), "kv.c")
        await assert_stays(lambda: seen == [], 0.4, "cancelled will is not applied")

    run(main())
