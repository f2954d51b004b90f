"""A small asyncio helper around autobahn-python for the end-to-end tests: connect a WAMP
session over WebSocket or RawSocket with any serializer and authentication method, and
get back the joined ApplicationSession (or the ABORT / close details)."""

import asyncio

from autobahn.asyncio.rawsocket import WampRawSocketClientFactory
from autobahn.asyncio.wamp import ApplicationSession
from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp import auth
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import ComponentConfig

SERIALIZERS = {"json": JsonSerializer, "msgpack": MsgPackSerializer, "cbor": CBORSerializer}
# (transport, serializer) pairs every basic test runs over
TRANSPORTS = [("websocket", s) for s in SERIALIZERS] + [("rawsocket", s) for s in SERIALIZERS]


class JoinFailed(Exception):
    """The router refused the session (ABORT) or the connection dropped before WELCOME."""

    def __init__(self, reason, message=None):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class Session(ApplicationSession):
    """An ApplicationSession that reports join, leave and disconnect through futures."""

    def __init__(self, config, authid=None, authmethods=None, secret=None, salted=None):
        super().__init__(config)
        loop = asyncio.get_event_loop()
        self.joined = loop.create_future()
        self.left = loop.create_future()
        self.disconnected = loop.create_future()
        self._authid = authid
        self._authmethods = authmethods
        self._secret = secret

    def onConnect(self):
        self.join(self.config.realm, authmethods=self._authmethods, authid=self._authid)

    def onChallenge(self, challenge):
        if challenge.method == "ticket":
            return self._secret
        if challenge.method == "wampcra":
            key = self._secret
            if "salt" in challenge.extra:
                key = auth.derive_key(self._secret, challenge.extra["salt"],
                                      challenge.extra["iterations"], challenge.extra["keylen"])
            return auth.compute_wcs(key, challenge.extra["challenge"])
        raise Exception(f"unexpected challenge {challenge.method}")

    def onJoin(self, details):
        self.details = details
        if not self.joined.done():
            self.joined.set_result(self)

    def onLeave(self, details):
        if not self.joined.done():
            self.joined.set_exception(JoinFailed(details.reason, details.message))
        if not self.left.done():
            self.left.set_result(details)
        self.disconnect()

    def onDisconnect(self):
        if not self.joined.done():
            self.joined.set_exception(JoinFailed("disconnected"))
        if not self.disconnected.done():
            self.disconnected.set_result(True)


async def connect(router, realm="realm1", transport="websocket", serializer="json",
                  authid=None, authmethods=None, secret=None, timeout=5.0):
    """Opens a session on `router` (a conftest.Router); raises JoinFailed on ABORT."""
    loop = asyncio.get_event_loop()
    session = Session(ComponentConfig(realm), authid=authid, authmethods=authmethods, secret=secret)
    ser = SERIALIZERS[serializer]()
    if transport == "websocket":
        factory = WampWebSocketClientFactory(lambda: session, url=router.ws_url, serializers=[ser])
        host, port = router.addr["ws"]
    else:
        factory = WampRawSocketClientFactory(lambda: session, serializer=ser)
        host, port = router.rawsocket
    await loop.create_connection(factory, host, port)
    return await asyncio.wait_for(session.joined, timeout)


def run(coro, timeout=30.0):
    """Runs a test coroutine with an overall deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def wait_for(predicate, timeout=5.0, interval=0.02):
    """Waits until predicate() is true; fails the test at the deadline."""
    deadline = asyncio.get_event_loop().time() + timeout
    while not predicate():
        if asyncio.get_event_loop().time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(interval)
