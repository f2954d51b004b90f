"""WAMP publish/subscribe through autobahn-python: payload round trips over every transport
and serializer, publication IDs, publisher exclusion and identification, black/white
listing, pattern-based subscriptions, the reserved `wamp.` namespace."""

import time

import pytest
from autobahn.wamp import message
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from wamp_client import TRANSPORTS, assert_stays, connect, received_of, run, wait_until

ACK = PublishOptions(acknowledge=True)


class Inbox:
    """Collects events: (args, kwargs, details) per topic handler."""

    def __init__(self):
        self.events = []

    def __call__(self, *args, details=None, **kwargs):
        self.events.append((args, kwargs, details))


async def subscribe_inbox(session, topic, **options):
    inbox = Inbox()
    await session.subscribe(inbox, topic, options=SubscribeOptions(details=True, **options))
    return inbox


async def barrier(publisher, subscribers, inboxes):
    """Publishes a sentinel and waits until each subscriber's sentinel inbox has it: every
    event published before it has then been delivered (events reach a session in order)."""
    before = [len(i.events) for i in inboxes]
    await publisher.publish("com.test.sentinel", options=ACK)
    await wait_until(lambda: all(len(i.events) > b for i, b in zip(inboxes, before)),
                     what="sentinel delivered to every subscriber")


@pytest.mark.parametrize("transport,serializer", TRANSPORTS)
def test_pubsub_payload_roundtrip(router, transport, serializer):
    payload_args = [1, -7, 2**53, 3.25, "héllo ✓", True, False, None, [1, [2, {"a": None}]],
                    {"nested": {"list": [1, 2, 3]}}, b"\x00\xffbinary"]
    payload_kwargs = {"k": "v", "n": 0, "bytes": b"\x01\x02", "empty_list": [], "empty_dict": {}}

    async def main():
        pub = await connect(router, transport=transport, serializer=serializer)
        sub = await connect(router, transport=transport, serializer=serializer)
        assert 1 <= pub.session_id <= 2**53
        assert pub.session_id != sub.session_id
        inbox = await subscribe_inbox(sub, "com.test.payload")
        publication = await pub.publish("com.test.payload", *payload_args, options=ACK, **payload_kwargs)
        assert 1 <= publication.id <= 2**53
        await wait_until(lambda: inbox.events, what="event delivered")
        args, kwargs, details = inbox.events[0]
        assert list(args) == payload_args
        assert kwargs == payload_kwargs
        assert details.publication == publication.id
        assert details.topic in (None, "com.test.payload")
        assert details.publisher is None, "publisher disclosed without disclose_me"
        # no arguments at all
        await pub.publish("com.test.payload", options=ACK)
        await wait_until(lambda: len(inbox.events) == 2, what="second event delivered")
        assert inbox.events[1][0] == () and inbox.events[1][1] == {}
        pub.leave()
        sub.leave()
        await pub.disconnected
        await sub.disconnected

    run(main())


@pytest.mark.parametrize("serializer", ["msgpack", "cbor"])
def test_binary_serializers_keep_large_ints_and_bytes(router, serializer):
    values = [2**53 + 1, -(2**53) - 1, 2**63 - 1, -(2**63), 2**64 - 1, bytes(range(256)), b""]

    async def main():
        pub = await connect(router, serializer=serializer)
        sub = await connect(router, transport="rawsocket", serializer=serializer)
        inbox = await subscribe_inbox(sub, "com.test.big")
        await pub.publish("com.test.big", *values, options=ACK, blob=b"\x00" * 70000)
        await wait_until(lambda: inbox.events, what="event delivered")
        args, kwargs, _ = inbox.events[0]
        assert list(args) == values
        assert kwargs == {"blob": b"\x00" * 70000}

    run(main())


def test_json_binary_convention_crosses_to_msgpack(router):
    """autobahn's JSON encodes bytes as "\\0"+base64; a MsgPack subscriber gets real bytes."""

    async def main():
        pub = await connect(router, serializer="json")
        sub = await connect(router, serializer="msgpack")
        inbox = await subscribe_inbox(sub, "com.test.bin")
        await pub.publish("com.test.bin", b"\x00\x01\xfe\xff", options=ACK)
        await wait_until(lambda: inbox.events, what="event delivered")
        assert inbox.events[0][0] == (b"\x00\x01\xfe\xff",)

    run(main())


EPOCH_2020_MS = 1_577_836_800_000


def test_publication_ids_increase_across_sessions(router):
    async def main():
        sessions = [await connect(router, transport="websocket"),
                    await connect(router, transport="rawsocket", serializer="msgpack"),
                    await connect(router, realm="realm2")]  # IDs are process-wide, across realms
        ids = []
        for i in range(30):
            publication = await sessions[i % 3].publish(f"com.test.ids.{i % 2}", i, options=ACK)
            ids.append(publication.id)
        now_ms = int(time.time() * 1000)
        assert ids == sorted(ids) and len(set(ids)) == len(ids), f"not strictly increasing: {ids}"
        for publication_id in ids:
            assert 1 <= publication_id <= 2**53
            # roughly (ms since 2020-01-01 UTC) << 12: the ID epoch of DESIGN.md
            assert abs((publication_id >> 12) + EPOCH_2020_MS - now_ms) < 60_000, (publication_id, now_ms)

    run(main())


def test_exclude_me_defaults_to_true(router):
    async def main():
        a = await connect(router)
        b = await connect(router)
        inbox_a = await subscribe_inbox(a, "com.test.me")
        inbox_b = await subscribe_inbox(b, "com.test.me")
        sentinel_a = await subscribe_inbox(a, "com.test.sentinel")
        sentinel_b = await subscribe_inbox(b, "com.test.sentinel")
        await a.publish("com.test.me", "default", options=ACK)
        await a.publish("com.test.me", "included", options=PublishOptions(acknowledge=True, exclude_me=False))
        # the sentinel from b reaches a (b excluded from its own)
        await b.publish("com.test.sentinel", options=ACK)
        await wait_until(lambda: sentinel_a.events, what="sentinel at a")
        await wait_until(lambda: len(inbox_b.events) == 2, what="both events at b")
        assert [e[0] for e in inbox_a.events] == [("included",)]
        assert [e[0] for e in inbox_b.events] == [("default",), ("included",)]
        assert sentinel_b.events == []

    run(main())


def test_disclose_me_sets_publisher_details(router):
    async def main():
        pub = await connect(router, authid="alice")
        sub = await connect(router)
        inbox = await subscribe_inbox(sub, "com.test.disclose")
        await pub.publish("com.test.disclose", "hidden", options=ACK)
        pub.extra_options[message.Publish] = {"disclose_me": True}
        await pub.publish("com.test.disclose", "shown", options=ACK)
        await wait_until(lambda: len(inbox.events) == 2, what="two events")
        hidden, shown = inbox.events
        assert hidden[2].publisher is None
        assert hidden[2].publisher_authid is None
        assert shown[2].publisher == pub.session_id
        assert shown[2].publisher_authid == "alice"
        assert shown[2].publisher_authrole == "anonymous"

    run(main())


def test_exclude_and_eligible_by_session_authid_authrole(router):
    async def main():
        pub = await connect(router, authid="pub")
        subs = [await connect(router, authid=name) for name in ("s1", "s2", "s3")]
        s1, s2, s3 = subs
        inboxes = [await subscribe_inbox(s, "com.test.list") for s in subs]
        sentinels = [await subscribe_inbox(s, "com.test.sentinel") for s in subs]
        cases = [
            ("exclude", PublishOptions(acknowledge=True, exclude=[s1.session_id]), {"s2", "s3"}),
            ("eligible", PublishOptions(acknowledge=True, eligible=[s1.session_id, s3.session_id]), {"s1", "s3"}),
            ("exclude_authid", PublishOptions(acknowledge=True, exclude_authid=["s2", "s3"]), {"s1"}),
            ("eligible_authid", PublishOptions(acknowledge=True, eligible_authid=["s2"]), {"s2"}),
            ("exclude_authrole", PublishOptions(acknowledge=True, exclude_authrole=["anonymous"]), set()),
            ("eligible_authrole other", PublishOptions(acknowledge=True, eligible_authrole=["nobody"]), set()),
            ("eligible_authrole anonymous", PublishOptions(acknowledge=True, eligible_authrole=["anonymous"]), {"s1", "s2", "s3"}),
            ("eligible and exclude", PublishOptions(acknowledge=True, eligible=[s1.session_id, s2.session_id],
                                                    exclude=[s2.session_id]), {"s1"}),
        ]
        for name, options, _ in cases:
            await pub.publish("com.test.list", name, options=options)
        await barrier(pub, subs, sentinels)
        for (name, _, expected) in cases:
            got = {s._authid for s, inbox in zip(subs, inboxes) if (name,) in [e[0] for e in inbox.events]}
            assert got == expected, f"{name}: delivered to {sorted(got)}, expected {sorted(expected)}"

    run(main())


def test_prefix_and_wildcard_subscriptions_report_topic(router):
    async def main():
        pub = await connect(router)
        sub = await connect(router)
        prefix = await subscribe_inbox(sub, "com.test.pre", match="prefix")
        wildcard = await subscribe_inbox(sub, "com.test..leaf", match="wildcard")
        exact = await subscribe_inbox(sub, "com.test.pre.a")
        for topic in ("com.test.pre.a", "com.test.prefix", "com.test.x.leaf", "com.test.x.y.leaf",
                      "com.test.pre.leaf", "com.other.pre"):
            await pub.publish(topic, topic, options=ACK)
        sentinel = await subscribe_inbox(sub, "com.test.sentinel")
        await barrier(pub, [sub], [sentinel])
        assert [(e[0][0], e[2].topic) for e in prefix.events] == [
            ("com.test.pre.a", "com.test.pre.a"),
            ("com.test.prefix", "com.test.prefix"),
            ("com.test.pre.leaf", "com.test.pre.leaf"),
        ]
        assert [(e[0][0], e[2].topic) for e in wildcard.events] == [
            ("com.test.x.leaf", "com.test.x.leaf"),
            ("com.test.pre.leaf", "com.test.pre.leaf"),
        ]
        assert [e[0][0] for e in exact.events] == ["com.test.pre.a"]

    run(main())


def test_same_topic_shares_one_subscription_id(router):
    async def main():
        a = await connect(router)
        b = await connect(router)
        sa = await a.subscribe(lambda *x: None, "com.test.shared")
        sb = await b.subscribe(lambda *x: None, "com.test.shared")
        sc = await b.subscribe(lambda *x: None, "com.test.shared", options=SubscribeOptions(match="prefix"))
        assert sa.id == sb.id
        assert sc.id != sa.id

    run(main())


def test_unsubscribe_stops_delivery(router):
    async def main():
        pub = await connect(router)
        sub = await connect(router)
        inbox = Inbox()
        subscription = await sub.subscribe(inbox, "com.test.unsub", options=SubscribeOptions(details=True))
        sentinel = await subscribe_inbox(sub, "com.test.sentinel")
        await pub.publish("com.test.unsub", 1, options=ACK)
        await wait_until(lambda: inbox.events, what="first event")
        await subscription.unsubscribe()
        await pub.publish("com.test.unsub", 2, options=ACK)
        await barrier(pub, [sub], [sentinel])
        assert [e[0] for e in inbox.events] == [(1,)]

    run(main())


def test_publish_to_wamp_namespace_is_refused(router):
    async def main():
        a = await connect(router)
        b = await connect(router)
        inbox = await subscribe_inbox(b, "wamp.session.on_join")
        with pytest.raises(ApplicationError) as raised:
            await a.publish("wamp.session.on_join", {"session": 1}, options=ACK)
        assert raised.value.error == "wamp.error.not_authorized"
        await assert_stays(lambda: not inbox.events, 0.3, "forged meta event not delivered")

    run(main())



def test_every_subscriber_sees_the_same_order(router):
    async def main():
        p1 = await connect(router)
        p2 = await connect(router, transport="rawsocket", serializer="msgpack")
        subscribers = [await connect(router), await connect(router, transport="rawsocket", serializer="cbor")]
        inboxes = [await subscribe_inbox(s, "com.test.order") for s in subscribers]
        for i in range(100):
            p1.publish("com.test.order", "p1", i)
            p2.publish("com.test.order", "p2", i)
        await p1.publish("com.test.order", "p1", "end", options=ACK)
        await p2.publish("com.test.order", "p2", "end", options=ACK)
        await wait_until(lambda: all(len(i.events) == 202 for i in inboxes), 10.0, what="202 events each")
        sequences = [[e[2].publication for e in inbox.events] for inbox in inboxes]
        assert sequences[0] == sequences[1], "subscribers saw different orders"
        assert sequences[0] == sorted(sequences[0]) and len(set(sequences[0])) == 202
        for who in ("p1", "p2"):
            mine = [e[0][1] for e in inboxes[0].events if e[0][0] == who]
            assert mine == list(range(100)) + ["end"], f"{who}'s events reordered"

    run(main())


@pytest.mark.parametrize("transport,serializer", [("websocket", "json"), ("rawsocket", "cbor")])
def test_large_event_near_the_default_limit(router, transport, serializer):
    async def main():
        pub = await connect(router, transport=transport, serializer=serializer)
        sub = await connect(router, transport=transport, serializer=serializer)
        inbox = await subscribe_inbox(sub, "com.test.large")
        big = "z" * 900_000
        await pub.publish("com.test.large", big, options=ACK)
        await wait_until(lambda: inbox.events, what="large event")
        assert inbox.events[0][0] == (big,)

    run(main())


def test_realms_are_isolated(router):
    async def main():
        pub = await connect(router, realm="realm1")
        here = await connect(router, realm="realm1")
        there = await connect(router, realm="realm2", transport="rawsocket")
        inbox_here = await subscribe_inbox(here, "com.test.iso")
        inbox_there = await subscribe_inbox(there, "com.test.iso")
        await pub.publish("com.test.iso", "r1", options=ACK)
        await wait_until(lambda: inbox_here.events, what="event in realm1")
        await assert_stays(lambda: not inbox_there.events, 0.3, "no event across realms")

    run(main())


def test_subscribing_twice_gives_the_same_subscription_and_one_event(router):
    async def main():
        pub = await connect(router)
        sub = await connect(router)
        first, second = Inbox(), Inbox()
        s1 = await sub.subscribe(first, "com.test.twice")
        s2 = await sub.subscribe(second, "com.test.twice")
        assert s1.id == s2.id
        await pub.publish("com.test.twice", 1, options=ACK)
        await wait_until(lambda: first.events and second.events, what="event at both handlers")
        await pub.publish("com.test.sentinel", options=ACK)
        events = received_of(sub, message.Event)
        assert len(events) == 1, f"{len(events)} EVENT messages for one publication to one subscription"
        # an exact subscription's EVENT carries no details.topic
        assert events[0].topic is None

    run(main())
