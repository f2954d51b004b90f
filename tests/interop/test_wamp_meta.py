"""The WAMP meta API through autobahn-python: session, subscription and registration
procedures and events, killing sessions, testaments."""

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, RegisterOptions, SubscribeOptions

from wamp_client import abort_transport, assert_stays, connect, run, wait_until

ACK = PublishOptions(acknowledge=True)


class Recorder:
    def __init__(self):
        self.events = []

    def __call__(self, *args, **kwargs):
        self.events.append((args, kwargs))


async def record(session, *topics):
    recorders = {}
    for topic in topics:
        recorders[topic] = Recorder()
        await session.subscribe(recorders[topic], topic)
    return recorders


def test_session_count_list_get(router):
    async def main():
        a = await connect(router, authid="alice")
        b = await connect(router, transport="rawsocket", serializer="msgpack")
        c = await connect(router, realm="other.realm")
        assert await a.call("wamp.session.count") == 2
        assert await c.call("wamp.session.count") == 1
        assert sorted(await a.call("wamp.session.list")) == sorted([a.session_id, b.session_id])
        assert await c.call("wamp.session.list") == [c.session_id]
        assert await a.call("wamp.session.count", ["anonymous"]) == 2
        assert await a.call("wamp.session.count", ["admin"]) == 0
        assert await a.call("wamp.session.list", ["admin"]) == []
        details = await b.call("wamp.session.get", a.session_id)
        assert details["session"] == a.session_id
        assert details["authid"] == "alice"
        assert details["authrole"] == "anonymous"
        assert details["authmethod"] == "anonymous"
        assert details["transport"]["type"] == "websocket"
        details = await a.call("wamp.session.get", b.session_id)
        assert details["transport"]["type"] == "rawsocket"
        assert details["authid"] == b.details.authid
        with pytest.raises(ApplicationError) as raised:
            await a.call("wamp.session.get", c.session_id)  # other realm
        assert raised.value.error == "wamp.error.no_such_session"
        b.leave()
        await b.disconnected
        assert await a.call("wamp.session.count") == 1

    run(main())


def test_session_on_join_and_on_leave(router):
    async def main():
        observer = await connect(router)
        rec = await record(observer, "wamp.session.on_join", "wamp.session.on_leave")
        joiner = await connect(router, authid="jo", transport="rawsocket")
        await wait_until(lambda: rec["wamp.session.on_join"].events, what="on_join")
        (args, _), = rec["wamp.session.on_join"].events
        assert args[0]["session"] == joiner.session_id
        assert args[0]["authid"] == "jo"
        assert args[0]["authrole"] == "anonymous"
        joiner_id = joiner.session_id
        joiner.leave()
        await wait_until(lambda: rec["wamp.session.on_leave"].events, what="on_leave")
        (args, _), = rec["wamp.session.on_leave"].events
        assert args[0] == joiner_id
        # a dropped connection is a leave too
        dropper = await connect(router)
        dropper_id = dropper.session_id
        abort_transport(dropper)
        await wait_until(lambda: len(rec["wamp.session.on_leave"].events) == 2, what="on_leave after abort")
        assert rec["wamp.session.on_leave"].events[1][0][0] == dropper_id

    run(main())


def test_session_kill(router):
    async def main():
        admin = await connect(router)
        victim = await connect(router)
        victim2 = await connect(router, transport="rawsocket", serializer="cbor")
        await victim.register(lambda: 1, "com.test.victim")
        await admin.call("wamp.session.kill", victim.session_id)
        details = await wait_left(victim)
        assert details.reason == "wamp.close.killed"
        await wait_until(lambda: victim.disconnected.done(), what="killed session disconnected")
        assert await admin.call("wamp.registration.match", "com.test.victim") is None
        await admin.call("wamp.session.kill", victim2.session_id, reason="com.example.maintenance", message="bye now")
        details = await wait_left(victim2)
        assert details.reason == "com.example.maintenance"
        assert details.message == "bye now"
        await wait_until(lambda: victim.disconnected.done() and victim2.disconnected.done(), what="disconnected")
        assert await admin.call("wamp.session.list") == [admin.session_id]
        with pytest.raises(ApplicationError) as raised:
            await admin.call("wamp.session.kill", 12345)
        assert raised.value.error == "wamp.error.no_such_session"
        elsewhere = await connect(router, realm="realm2")
        with pytest.raises(ApplicationError) as raised:
            await admin.call("wamp.session.kill", elsewhere.session_id)
        assert raised.value.error == "wamp.error.no_such_session", "kill must not reach into another realm"
        await assert_stays(lambda: not elsewhere.left.done(), 0.2, "session in another realm survives")

    run(main())


async def wait_left(session, timeout=3.0):
    await wait_until(lambda: session.left.done(), timeout, what="session got GOODBYE")
    return session.left.result()


def test_session_kill_by_authid_and_authrole(router):
    async def main():
        admin = await connect(router, authid="admin")
        x1 = await connect(router, authid="x")
        x2 = await connect(router, authid="x", transport="rawsocket")
        y = await connect(router, authid="y")
        elsewhere = await connect(router, authid="x", realm="realm2")
        x_ids = sorted([x1.session_id, x2.session_id])
        y_id = y.session_id
        killed = await admin.call("wamp.session.kill_by_authid", "x")
        assert sorted(killed) == x_ids
        assert (await wait_left(x1)).reason == "wamp.close.killed"
        assert (await wait_left(x2)).reason == "wamp.close.killed"
        await assert_stays(lambda: not y.left.done() and not elsewhere.left.done(), 0.3, "others survive")
        killed = await admin.call("wamp.session.kill_by_authrole", "anonymous", reason="com.example.all")
        assert killed == [y_id], "kill_by_authrole must not kill the caller"
        assert (await wait_left(y)).reason == "com.example.all"
        assert not admin.left.done()
        assert await elsewhere.call("wamp.session.count") == 1

    run(main())


def test_subscription_meta_procedures(router):
    async def main():
        a = await connect(router)
        b = await connect(router)
        exact = await a.subscribe(lambda *x: None, "com.meta.exact")
        await b.subscribe(lambda *x: None, "com.meta.exact")
        prefix = await a.subscribe(lambda *x: None, "com.meta", options=SubscribeOptions(match="prefix"))
        wildcard = await b.subscribe(lambda *x: None, "com..exact", options=SubscribeOptions(match="wildcard"))
        listing = await a.call("wamp.subscription.list")
        assert exact.id in listing["exact"]
        assert listing["prefix"] == [prefix.id]
        assert listing["wildcard"] == [wildcard.id]
        assert await a.call("wamp.subscription.lookup", "com.meta.exact") == exact.id
        assert await a.call("wamp.subscription.lookup", "com.meta", {"match": "prefix"}) == prefix.id
        assert await a.call("wamp.subscription.lookup", "com..exact", {"match": "wildcard"}) == wildcard.id
        assert await a.call("wamp.subscription.lookup", "com.meta.none") is None
        assert sorted(await a.call("wamp.subscription.match", "com.meta.exact")) == sorted([exact.id, prefix.id, wildcard.id])
        assert await a.call("wamp.subscription.match", "org.nothing") is None
        details = await a.call("wamp.subscription.get", prefix.id)
        assert details["id"] == prefix.id
        assert details["uri"] == "com.meta"
        assert details["match"] == "prefix"
        assert isinstance(details["created"], str) and details["created"]
        assert sorted(await a.call("wamp.subscription.list_subscribers", exact.id)) == sorted([a.session_id, b.session_id])
        assert await a.call("wamp.subscription.count_subscribers", exact.id) == 2
        assert await a.call("wamp.subscription.count_subscribers", prefix.id) == 1
        for procedure in ("wamp.subscription.get", "wamp.subscription.list_subscribers",
                          "wamp.subscription.count_subscribers"):
            with pytest.raises(ApplicationError) as raised:
                await a.call(procedure, 999999)
            assert raised.value.error == "wamp.error.no_such_subscription", procedure

    run(main())


def test_subscription_meta_events(router):
    async def main():
        observer = await connect(router)
        topics = ["wamp.subscription.on_create", "wamp.subscription.on_subscribe",
                  "wamp.subscription.on_unsubscribe", "wamp.subscription.on_delete"]
        rec = await record(observer, *topics)
        a = await connect(router)
        b = await connect(router)
        a_id, b_id = a.session_id, b.session_id
        mine = lambda t: [e[0] for e in rec[t].events if e[0][0] in (a_id, b_id)]
        sub_a = await a.subscribe(lambda *x: None, "com.meta.ev")
        await wait_until(lambda: mine("wamp.subscription.on_subscribe"), what="on_subscribe")
        [(session, details)] = mine("wamp.subscription.on_create")
        assert session == a.session_id
        assert details["id"] == sub_a.id and details["uri"] == "com.meta.ev" and details["match"] == "exact"
        assert mine("wamp.subscription.on_subscribe") == [(a.session_id, sub_a.id)]
        sub_b = await b.subscribe(lambda *x: None, "com.meta.ev")
        await wait_until(lambda: len(mine("wamp.subscription.on_subscribe")) == 2, what="second on_subscribe")
        assert mine("wamp.subscription.on_subscribe")[1] == (b.session_id, sub_a.id)
        assert len(mine("wamp.subscription.on_create")) == 1, "on_create only for the first subscriber"
        await sub_a.unsubscribe()
        await wait_until(lambda: mine("wamp.subscription.on_unsubscribe"), what="on_unsubscribe")
        assert mine("wamp.subscription.on_unsubscribe") == [(a.session_id, sub_a.id)]
        await assert_stays(lambda: not mine("wamp.subscription.on_delete"), 0.2, "no on_delete while b subscribed")
        b.leave()  # leaving removes b's subscription, the last one
        await wait_until(lambda: mine("wamp.subscription.on_delete"), what="on_delete")
        assert mine("wamp.subscription.on_unsubscribe")[1] == (b_id, sub_b.id)
        assert mine("wamp.subscription.on_delete") == [(b_id, sub_a.id)]
        assert await observer.call("wamp.subscription.lookup", "com.meta.ev") is None

    run(main())


def test_registration_meta_procedures(router):
    async def main():
        a = await connect(router)
        b = await connect(router)
        exact = await a.register(lambda: 1, "com.meta.proc", options=RegisterOptions(invoke="roundrobin"))
        await b.register(lambda: 2, "com.meta.proc", options=RegisterOptions(invoke="roundrobin"))
        prefix = await a.register(lambda: 3, "com.meta", options=RegisterOptions(match="prefix"))
        wildcard = await b.register(lambda: 4, "com..proc", options=RegisterOptions(match="wildcard"))
        listing = await a.call("wamp.registration.list")
        assert listing["exact"] == [exact.id]
        assert listing["prefix"] == [prefix.id]
        assert listing["wildcard"] == [wildcard.id]
        assert await a.call("wamp.registration.lookup", "com.meta.proc") == exact.id
        assert await a.call("wamp.registration.lookup", "com.meta", {"match": "prefix"}) == prefix.id
        assert await a.call("wamp.registration.lookup", "com..proc", {"match": "wildcard"}) == wildcard.id
        assert await a.call("wamp.registration.lookup", "com.meta.none") is None
        assert await a.call("wamp.registration.match", "com.meta.proc") == exact.id
        assert await a.call("wamp.registration.match", "com.meta.other") == prefix.id
        assert await a.call("wamp.registration.match", "com.x.proc") == wildcard.id
        assert await a.call("wamp.registration.match", "org.none") is None
        details = await a.call("wamp.registration.get", exact.id)
        assert details["id"] == exact.id
        assert details["uri"] == "com.meta.proc"
        assert details["match"] == "exact"
        assert details["invoke"] == "roundrobin"
        assert isinstance(details["created"], str) and details["created"]
        assert sorted(await a.call("wamp.registration.list_callees", exact.id)) == sorted([a.session_id, b.session_id])
        assert await a.call("wamp.registration.count_callees", exact.id) == 2
        assert await a.call("wamp.registration.count_callees", wildcard.id) == 1
        for procedure in ("wamp.registration.get", "wamp.registration.list_callees",
                          "wamp.registration.count_callees"):
            with pytest.raises(ApplicationError) as raised:
                await a.call(procedure, 999999)
            assert raised.value.error == "wamp.error.no_such_registration", procedure

    run(main())


def test_registration_meta_events(router):
    async def main():
        observer = await connect(router)
        topics = ["wamp.registration.on_create", "wamp.registration.on_register",
                  "wamp.registration.on_unregister", "wamp.registration.on_delete"]
        rec = await record(observer, *topics)
        a = await connect(router)
        b = await connect(router)
        mine = lambda t: [e[0] for e in rec[t].events]
        reg_a = await a.register(lambda: 1, "com.meta.rp", options=RegisterOptions(invoke="first"))
        await wait_until(lambda: mine("wamp.registration.on_register"), what="on_register")
        [(session, details)] = mine("wamp.registration.on_create")
        assert session == a.session_id
        assert details["id"] == reg_a.id and details["uri"] == "com.meta.rp" and details["invoke"] == "first"
        assert mine("wamp.registration.on_register") == [(a.session_id, reg_a.id)]
        await b.register(lambda: 2, "com.meta.rp", options=RegisterOptions(invoke="first"))
        await wait_until(lambda: len(mine("wamp.registration.on_register")) == 2, what="second on_register")
        assert mine("wamp.registration.on_register")[1] == (b.session_id, reg_a.id)
        assert len(mine("wamp.registration.on_create")) == 1
        await reg_a.unregister()
        await wait_until(lambda: mine("wamp.registration.on_unregister"), what="on_unregister")
        assert mine("wamp.registration.on_unregister") == [(a.session_id, reg_a.id)]
        await assert_stays(lambda: not mine("wamp.registration.on_delete"), 0.2, "no on_delete while b registered")
        b_id = b.session_id
        abort_transport(b)
        await wait_until(lambda: mine("wamp.registration.on_delete"), what="on_delete")
        assert mine("wamp.registration.on_unregister")[1] == (b_id, reg_a.id)
        assert mine("wamp.registration.on_delete") == [(b_id, reg_a.id)]

    run(main())


@pytest.mark.parametrize("how", ["goodbye", "abort", "killed"])
def test_testament_published_when_session_leaves(router, how):
    async def main():
        watcher = await connect(router)
        rec = await record(watcher, "com.test.will")
        mortal = await connect(router, transport="rawsocket", serializer="msgpack")
        assert await mortal.call("wamp.session.add_testament", "com.test.will", ["gone", 1], {"who": "mortal"}) is None
        await assert_stays(lambda: not rec["com.test.will"].events, 0.2, "no testament while alive")
        if how == "goodbye":
            mortal.leave()
        elif how == "killed":
            await watcher.call("wamp.session.kill", mortal.session_id)
        else:
            abort_transport(mortal)
        await wait_until(lambda: rec["com.test.will"].events, what="testament published")
        assert rec["com.test.will"].events == [(("gone", 1), {"who": "mortal"})]

    run(main())


def test_flush_testaments(router):
    async def main():
        watcher = await connect(router)
        rec = await record(watcher, "com.test.will", "com.test.sentinel")
        mortal = await connect(router)
        await mortal.call("wamp.session.add_testament", "com.test.will", ["one"], {})
        await mortal.call("wamp.session.add_testament", "com.test.will", ["two"], {})
        assert await mortal.call("wamp.session.flush_testaments") == 2
        assert await mortal.call("wamp.session.flush_testaments") == 0
        await mortal.call("wamp.session.add_testament", "com.test.sentinel", ["last"], {})
        mortal.leave()
        await wait_until(lambda: rec["com.test.sentinel"].events, what="remaining testament published")
        assert rec["com.test.will"].events == []

    run(main())
