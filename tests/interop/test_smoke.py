"""Smallest end-to-end check over every transport and serializer: join, subscribe,
publish with acknowledge, call."""

import pytest

from wamp_client import TRANSPORTS, connect, run, wait_for


@pytest.mark.parametrize("transport,serializer", TRANSPORTS)
def test_pubsub_and_rpc(router, transport, serializer):
    async def main():
        a = await connect(router, transport=transport, serializer=serializer)
        b = await connect(router, transport=transport, serializer=serializer)
        assert 1 <= a.session_id <= 2**53
        got = []
        await b.subscribe(lambda *args, **kw: got.append((args, kw)), "com.example.topic")
        pub = await a.publish("com.example.topic", 1, "two", b"\x00\x01", key={"x": [1.5]},
                              options=__import__("autobahn").wamp.types.PublishOptions(acknowledge=True))
        assert 1 <= pub.id <= 2**53
        await wait_for(lambda: got)
        assert got[0] == ((1, "two", b"\x00\x01"), {"key": {"x": [1.5]}})
        await b.register(lambda x, y: x + y, "com.example.add")
        assert await a.call("com.example.add", 2, 3) == 5
        a.leave()
        b.leave()
        await a.disconnected
        await b.disconnected

    run(main())
