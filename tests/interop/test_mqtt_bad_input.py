"""Bad input at the MQTT port: the right reason code in MQTT 5 (DISCONNECT, or CONNACK
before the session exists), a plain close in 3.1.1, a will published, and the router
unharmed (other sessions keep working, no panic)."""

import os
import random
import socket
import struct

import pytest

from mqtt_client import Client, Raw, connect_packet, new_id, packet, publish_packet, s


def v5_disconnect_reason(raw):
    p = raw.expect(14)
    assert raw.closed() == []
    return p[2][0]


def connected(router, version):
    raw = Raw(router)
    raw.send(connect_packet(new_id(), version=version))
    raw.expect(2)
    return raw


def test_wildcard_in_publish_topic(router):
    raw = connected(router, 5)
    raw.send(publish_packet("a/+/c", b"x", version=5))
    assert v5_disconnect_reason(raw) == 0x90
    raw = connected(router, 4)
    raw.send(publish_packet("a/#", b"x"))
    assert raw.closed() == []


def test_invalid_utf8_topic(router):
    raw = connected(router, 5)
    raw.send(packet(0x30, s(b"a/\xff\xfe") + b"\x00payload"))
    assert v5_disconnect_reason(raw) in (0x81, 0x90)
    raw = connected(router, 4)
    raw.send(packet(0x30, s(b"a/\xc0") + b"payload"))
    assert raw.closed() == []


def test_second_connect_is_protocol_error(router):
    raw = connected(router, 5)
    raw.send(connect_packet(new_id(), version=5))
    assert v5_disconnect_reason(raw) == 0x82
    raw = connected(router, 4)
    raw.send(connect_packet(new_id()))
    assert raw.closed() == []


def test_first_packet_not_connect(router):
    raw = Raw(router)
    raw.send(packet(0xC0, b""))
    assert raw.closed() == []


def test_unsupported_protocol_level_gets_connack_1(router):
    raw = Raw(router)
    body = s("MQTT") + bytes([7, 2]) + struct.pack("!H", 60) + s("x")
    raw.send(packet(0x10, body))
    _, _, ack = raw.expect(2)
    assert ack == b"\x00\x01"
    assert raw.closed() == []


def test_malformed_connect_v5_gets_connack_reason(router):
    raw = Raw(router)
    # MQTT 5 CONNECT with reserved flag bit 0 set: malformed.
    body = s("MQTT") + bytes([5, 0x03]) + struct.pack("!H", 60) + b"\x00" + s("x")
    raw.send(packet(0x10, body))
    _, _, ack = raw.expect(2)
    assert ack[1] in (0x81, 0x82)
    assert raw.closed() == []


def test_oversized_remaining_length_rejected_before_buffering(router):
    raw = connected(router, 5)
    raw.send(b"\x30\xff\xff\xff\x7f")
    assert v5_disconnect_reason(raw) == 0x95


def test_bad_packet_publishes_will(router):
    watcher = Client(router, new_id(), 4)
    watcher.connect()
    watcher.subscribe("bad/will", qos=1)
    raw = Raw(router)
    raw.send(connect_packet(new_id(), version=5, will=("bad/will", b"broken", 1, False)))
    raw.expect(2)
    raw.send(b"\x00\x00")  # packet type 0 is reserved
    assert v5_disconnect_reason(raw) in (0x81, 0x82)
    assert watcher.get().payload == b"broken"


def test_subscribe_no_local_on_shared_is_protocol_error(router):
    raw = connected(router, 5)
    body = struct.pack("!H", 1) + b"\x00" + s("$share/g/x") + bytes([0x04 | 1])
    raw.send(packet(0x82, body))
    assert v5_disconnect_reason(raw) == 0x82


def test_receive_maximum_exceeded(router_factory):
    router = router_factory("[limits]\nmqtt_receive_max = 2\n")
    raw = connected(router, 5)
    for pid in (1, 2, 3):
        raw.send(publish_packet("rm/x", b"x", qos=2, packet_id=pid, version=5))
    assert raw.expect(5) and raw.expect(5)
    assert v5_disconnect_reason(raw) == 0x93


@pytest.mark.parametrize("seed", range(4))
def test_arbitrary_bytes_never_hurt_the_router(router, seed):
    rng = random.Random(seed)
    for i in range(60):
        sock = socket.create_connection(router.mqtt, timeout=2)
        prefix = b""
        if i % 2:
            prefix = connect_packet(f"fuzz{i}", version=rng.choice([3, 4, 5]))
            if prefix[8] == 3:
                prefix = connect_packet(f"fuzz{i}", version=4)
        data = prefix + bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 400)))
        try:
            sock.sendall(data)
            sock.settimeout(0.2)
            while sock.recv(4096):
                pass
        except OSError:
            pass
        sock.close()
    assert router.proc.poll() is None, router.logs()
    c = Client(router, new_id(), 5)
    assert c.connect()[1] == 0
    c.subscribe("still/alive", qos=1)
    c.publish("still/alive", b"yes", qos=1)
    assert c.get().payload == b"yes"
    assert "panicked" not in router.logs()
