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

    def __init__(self, config, authid=None, authmethods=None, secret=None, salted=None,
                 key=None, authextra=None):
        super().__init__(config)
        loop = asyncio.get_event_loop()
        self.joined = loop.create_future()
        self.left = loop.create_future()
        self.disconnected = loop.create_future()
        self._authid = authid
        self._authmethods = authmethods
        self._secret = secret
        self._key = key
        self._authextra = authextra

    def onConnect(self):
        self.join(self.config.realm, authmethods=self._authmethods, authid=self._authid,
                  authextra=self._authextra)

    def onChallenge(self, challenge):
        if challenge.method == "ticket":
            return self._secret
        if challenge.method == "wampcra":
            key = self._secret
            if "salt" in challenge.extra:
                key = auth.derive_key(self._secret, challenge.extra["salt"],
                                      challenge.extra["iterations"], challenge.extra["keylen"])
            return auth.compute_wcs(key, challenge.extra["challenge"])
        if challenge.method == "cryptosign":
            return self._key.sign_challenge(challenge)
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
                  authid=None, authmethods=None, secret=None, key=None, authextra=None, timeout=5.0):
    """Opens a session on `router` (a conftest.Router); raises JoinFailed on ABORT. `key`: an
    autobahn CryptosignKey for WAMP-Cryptosign."""
    loop = asyncio.get_event_loop()
    session = Session(ComponentConfig(realm), authid=authid, authmethods=authmethods, secret=secret,
                      key=key, authextra=authextra)
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


# ---------------------------------------------------------------------------------------
# Hooks on autobahn sessions: every message received is recorded (`session.received`), and
# options autobahn does not expose (disclose_me, CANCEL mode, router-side call timeout) can
# be added to outgoing messages of a type (`session.extra_options[message.Call] = {...}`).

import json
import socket
import struct
import base64
import os
import hashlib

import cbor2
import msgpack
from autobahn.wamp import message as wamp_message


class RawMessage:
    """An outgoing message given as a plain list; autobahn's transports serialize it as is."""

    def __init__(self, fields):
        self.fields = fields

    def serialize(self, serializer):
        return serializer.serialize(self.fields)

    def __str__(self):
        return f"RawMessage({self.fields!r})"


def _install_hooks(session):
    session.received = []
    session.sent = []
    session.extra_options = {}
    transport = session._transport
    original_send = transport.send

    def send(msg):
        extra = session.extra_options.get(type(msg))
        if extra:
            fields = msg.marshal()
            fields[2] = dict(fields[2], **extra)  # Options is the third field of these types
            msg = RawMessage(fields)
        session.sent.append(msg)
        return original_send(msg)

    transport.send = send


_original_on_connect = Session.onConnect


def _on_connect(self):
    _install_hooks(self)
    _original_on_connect(self)


def _on_message(self, msg):
    if hasattr(self, "received"):
        self.received.append(msg)
    return ApplicationSession.onMessage(self, msg)


Session.onConnect = _on_connect
Session.onMessage = _on_message


def send_raw(session, fields):
    """Sends a message given as a list through the session's transport."""
    session._transport.send(RawMessage(fields))


def received_of(session, kind):
    """The messages of one autobahn message class the session received so far."""
    return [m for m in session.received if isinstance(m, kind)]


def abort_transport(session):
    """Drops the session's TCP connection without GOODBYE or a WebSocket close."""
    session._transport.transport.abort()


async def wait_until(predicate, timeout=5.0, what="condition"):
    """Like wait_for, with a message naming what was awaited."""
    try:
        await wait_for(predicate, timeout)
    except AssertionError:
        raise AssertionError(f"{what}: not met within {timeout} s") from None


async def assert_stays(predicate, duration=0.3, what="condition"):
    """Asserts predicate() stays true for `duration` seconds (for things that must NOT happen)."""
    deadline = asyncio.get_event_loop().time() + duration
    while asyncio.get_event_loop().time() < deadline:
        assert predicate(), f"{what}: no longer true"
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------------------------
# Raw clients for protocol-level tests (no autobahn): a RawSocket client and a minimal
# WebSocket client, both blocking with timeouts.

SERIALIZER_IDS = {"json": 1, "msgpack": 2, "cbor": 3}


def encode(serializer, fields):
    if serializer == "json":
        return json.dumps(fields).encode()
    if serializer == "msgpack":
        return msgpack.packb(fields, use_bin_type=True)
    return cbor2.dumps(fields)


def decode(serializer, data):
    if serializer == "json":
        return json.loads(data)
    if serializer == "msgpack":
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    return cbor2.loads(data)


HELLO_ROLES = {"roles": {"caller": {"features": {}}, "callee": {"features": {}},
                         "publisher": {"features": {}}, "subscriber": {"features": {}}}}


class Closed(Exception):
    """The router closed the connection."""


def _recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise Closed(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


class RawSocketClient:
    """WAMP RawSocket over TCP; frames are (type, payload) with type 0 message, 1 ping, 2 pong."""

    def __init__(self, addr, serializer="json", timeout=5.0):
        self.serializer = serializer
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.settimeout(timeout)
        self.handshake_reply = None

    def handshake(self, serializer_id=None, length_exp=15):
        sid = SERIALIZER_IDS[self.serializer] if serializer_id is None else serializer_id
        self.sock.sendall(bytes([0x7F, (length_exp << 4) | sid, 0, 0]))
        self.handshake_reply = _recv_exact(self.sock, 4)
        return self.handshake_reply

    def send_frame(self, payload, frame_type=0):
        self.sock.sendall(struct.pack("!I", (frame_type << 24) | len(payload)) + payload)

    def recv_frame(self):
        header = _recv_exact(self.sock, 4)
        frame_type = header[0] & 0x07
        length = struct.unpack("!I", b"\0" + header[1:])[0]
        return frame_type, _recv_exact(self.sock, length)

    def send(self, fields):
        self.send_frame(encode(self.serializer, fields))

    def recv(self):
        """The next WAMP message (skipping PONGs)."""
        while True:
            frame_type, payload = self.recv_frame()
            if frame_type == 0:
                return decode(self.serializer, payload)

    def join(self, realm="realm1"):
        if self.handshake_reply is None:
            assert self.handshake()[0] == 0x7F
        self.send([1, realm, HELLO_ROLES])
        welcome = self.recv()
        assert welcome[0] == 2, welcome
        return welcome

    def is_closed(self, timeout=2.0):
        """True when the router closes the connection within `timeout` (data read is discarded)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self):
        self.sock.close()


class WebSocketClient:
    """A minimal WebSocket client (RFC 6455) that sends whatever frames a test asks for."""

    def __init__(self, addr, path="/ws", protocols=("wamp.2.json",), timeout=5.0):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.settimeout(timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {addr[0]}:{addr[1]}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if protocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Closed("closed during the WebSocket handshake")
            response += chunk
        head, self._buffer = response.split(b"\r\n\r\n", 1)
        self.status_line = head.split(b"\r\n")[0].decode()
        self.headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.decode().partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.protocol = self.headers.get("sec-websocket-protocol")
        self.serializer = (self.protocol or "wamp.2.json").rsplit(".", 1)[1]

    def upgraded(self):
        return " 101 " in self.status_line + " "

    def send_frame(self, payload, opcode=None):
        if opcode is None:
            opcode = 2 if self.serializer != "json" else 1
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, n):
        while len(self._buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed("connection closed")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def recv_frame(self):
        """(opcode, payload) of the next frame; answers nothing by itself."""
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return b0 & 0x0F, self._read(n)

    def send(self, fields):
        self.send_frame(encode(self.serializer, fields))

    def recv(self):
        """The next WAMP message; raises Closed on a close frame or EOF."""
        while True:
            opcode, payload = self.recv_frame()
            if opcode in (1, 2):
                return decode(self.serializer, payload)
            if opcode == 8:
                raise Closed(f"close frame {payload[:2].hex()}")

    def join(self, realm="realm1"):
        self.send([1, realm, HELLO_ROLES])
        welcome = self.recv()
        assert welcome[0] == 2, welcome
        return welcome

    def is_closed(self, timeout=2.0):
        """True when the router sends a close frame or closes TCP within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            while True:
                opcode, _ = self.recv_frame()
                if opcode == 8:
                    return True
        except Closed:
            return True
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self):
        self.sock.close()
