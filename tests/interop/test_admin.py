"""The admin HTTP listener (docs/admin.md) of a real router: /metrics counts a known load
exactly (autobahn and paho clients, and raw clients for the bytes), /healthz and /readyz,
the JSON listings, kicking real WAMP and MQTT 5 / 3.1.1 clients, every endpoint's errors,
the bearer token, where the listener binds, and the log lines."""

import asyncio
import json
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, RegisterOptions, SubscribeOptions

from conftest import BIN, _pump, poll_until, read_listeners
from paho.mqtt.packettypes import PacketTypes

from mqtt_client import Client, Raw, connect_packet, new_id, packet, props, publish_packet
from wamp_client import RawSocketClient, connect, encode, run, wait_until

ACK = PublishOptions(acknowledge=True)


# ------------------------------------------------------------------------------ helpers

def http(router, method, path, token=None, timeout=5.0):
    """(status, headers, body bytes) of one request to the router's admin listener."""
    request = urllib.request.Request(router.admin_url + path, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def get_json(router, path, method="GET", token=None):
    status, headers, body = http(router, method, path, token)
    assert headers.get("Content-Type", "").startswith("application/json"), (path, headers)
    return status, json.loads(body)


SAMPLE = re.compile(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$')


def scrape(router, token=None):
    """The samples of /metrics: {(name, ((label, value), ...)): value}."""
    status, headers, body = http(router, "GET", "/metrics", token)
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/openmetrics-text"), headers
    text = body.decode()
    assert text.endswith("# EOF\n")
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        pairs = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', labels or "")))
        samples[(name, pairs)] = float(value)
    return samples


def key(name, **labels):
    return (name, tuple(sorted(labels.items())))


def settled_scrape(router):
    """A scrape once the counters stopped moving (what the clients did before is all in)."""
    previous = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        samples = scrape(router)
        samples.pop(key("foxrouter_uptime_seconds"), None)
        if samples == previous:
            return samples
        previous = samples
        time.sleep(0.05)
    raise AssertionError("the metrics did not settle")


def assert_deltas(router, before, expected, timeout=10.0):
    """Waits until every expected (key -> delta) holds; fails naming the ones that do not."""
    deadline = time.monotonic() + timeout
    while True:
        after = scrape(router)
        wrong = {k: (after.get(k, 0) - before.get(k, 0), want) for k, want in expected.items()
                 if after.get(k, 0) - before.get(k, 0) != want}
        if not wrong:
            return after
        if time.monotonic() > deadline:
            raise AssertionError("metrics moved differently (got, expected): " +
                                 "; ".join(f"{k}: {v}" for k, v in wrong.items()))
        time.sleep(0.05)


def reason_value(rc):
    return int(getattr(rc, "value", rc))


def listed_sessions(router, **query):
    path = "/api/v1/sessions" + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
    status, body = get_json(router, path)
    assert status == 200, body
    return body


def session_ids(router):
    return {s["id"] for s in listed_sessions(router, limit=1000)["sessions"]}


# ------------------------------------------------------------------------------ metrics

def test_metrics_count_a_known_load_exactly(router):
    """N WAMP publishes (autobahn) and M MQTT publishes (paho), both delivered to a WAMP and
    an MQTT subscriber, and 3 calls (one answered, one failing in the callee, one to nobody):
    every counter moves by exactly that."""
    n, m = 25, 15
    s_m = Client(router, new_id("sub"), 5)
    s_m.connect()
    assert s_m.subscribe("load/#", qos=0) == [0]

    async def main():
        s_w = await connect(router)
        events = []
        await s_w.subscribe(lambda *a, **k: events.append(a), "load", options=SubscribeOptions(match="prefix"))

        def fail():
            raise ApplicationError("load.error.failed")

        await s_w.register(lambda a, b: a + b, "load.add")
        await s_w.register(fail, "load.fail")
        before = settled_scrape(router)

        p = await connect(router)
        for i in range(n):
            await p.publish("load.w", i, options=ACK)
        q = Client(router, new_id("pub"), 5)
        q.connect()
        for i in range(m):
            q.publish("load/m", str(i).encode(), qos=1)
        q.disconnect()
        assert await p.call("load.add", 2, 3) == 5
        for procedure in ("load.fail", "load.nobody"):
            with pytest.raises(ApplicationError):
                await p.call(procedure)
        p.leave()
        await asyncio.wait_for(p.disconnected, 5)
        await wait_until(lambda: len(events) == n + m, what="the WAMP subscriber got everything")
        got = [s_m.get() for _ in range(n + m)]
        assert sorted(x.topic for x in got) == ["load/m"] * m + ["load/w"] * n
        expected = {
            key("foxrouter_publications_received_total", protocol="wamp"): n,
            key("foxrouter_publications_received_total", protocol="mqtt"): m,
            key("foxrouter_publications_sent_total", protocol="wamp"): n + m,
            key("foxrouter_publications_sent_total", protocol="mqtt"): n + m,
            # p: HELLO, N PUBLISH, 3 CALL, GOODBYE; s_w: YIELD, ERROR
            key("foxrouter_messages_received_total", protocol="wamp"): n + 7,
            # p: WELCOME, N PUBLISHED, RESULT, 2 ERROR, GOODBYE; s_w: N+M EVENT, 2 INVOCATION
            key("foxrouter_messages_sent_total", protocol="wamp"): (n + 5) + (n + m) + 2,
            # q: CONNECT, M PUBLISH, DISCONNECT
            key("foxrouter_messages_received_total", protocol="mqtt"): m + 2,
            # q: CONNACK, M PUBACK; s_m: N+M PUBLISH
            key("foxrouter_messages_sent_total", protocol="mqtt"): (m + 1) + (n + m),
            key("foxrouter_calls_total"): 3,
            key("foxrouter_call_errors_total"): 2,
            key("foxrouter_connections_total", protocol="wamp", transport="websocket"): 1,
            key("foxrouter_connections_total", protocol="mqtt", transport="tcp"): 1,
            key("foxrouter_connections_total", protocol="wamp", transport="rawsocket"): 0,
            key("foxrouter_connections_open", protocol="wamp", transport="websocket"): 0,
            key("foxrouter_connections_open", protocol="mqtt", transport="tcp"): 0,
            key("foxrouter_sessions", protocol="wamp"): 0,
            key("foxrouter_sessions", protocol="mqtt"): 0,
            key("foxrouter_auth_failures_total", protocol="wamp"): 0,
            key("foxrouter_queue_dropped_total"): 0,
        }
        after = assert_deltas(router, before, expected)
        assert after[key("foxrouter_sessions", protocol="wamp")] == 1, "s_w"
        assert after[key("foxrouter_sessions", protocol="mqtt")] == 1, "s_m"
        assert after[key("foxrouter_registrations")] == 2
        assert after[key("foxrouter_subscriptions")] == 2
        assert after[key("foxrouter_history_messages")] - before[key("foxrouter_history_messages")] == n + m
        for protocol in ("wamp", "mqtt"):
            moved = (after[key("foxrouter_bytes_received_total", protocol=protocol)]
                     - before[key("foxrouter_bytes_received_total", protocol=protocol)])
            assert moved > 0, protocol
        s_w.leave()

    run(main())
    s_m.disconnect()


def test_bytes_are_counted_exactly(router):
    """Raw clients whose every byte the test knows: bytes in and out move by exactly the
    encoded messages (WAMP without RawSocket framing, MQTT whole packets)."""
    before = settled_scrape(router)
    wamp_in = wamp_out = 0
    rs = RawSocketClient(router.rawsocket)
    assert rs.handshake()[0] == 0x7F

    def wamp_send(fields):
        nonlocal wamp_in
        payload = encode("json", fields)
        wamp_in += len(payload)
        rs.send_frame(payload)

    def wamp_recv():
        nonlocal wamp_out
        frame_type, payload = rs.recv_frame()
        assert frame_type == 0
        wamp_out += len(payload)
        return json.loads(payload)

    wamp_send([1, "realm1", {"roles": {"publisher": {}}}])
    assert wamp_recv()[0] == 2
    for i in range(5):
        wamp_send([16, i + 1, {"acknowledge": True}, "bytes.topic", ["x" * i]])
        assert wamp_recv()[0] == 17
    wamp_send([6, {}, "wamp.close.close_realm"])
    assert wamp_recv()[0] == 6
    rs.close()

    mqtt_in = mqtt_out = 0
    raw = Raw(router)

    def mqtt_send(data):
        nonlocal mqtt_in
        mqtt_in += len(data)
        raw.send(data)

    def mqtt_read(ptype):
        nonlocal mqtt_out
        _, _, body = p = raw.expect(ptype)
        mqtt_out += 1 + len(bytes(_varint(len(body)))) + len(body)
        return p

    mqtt_send(connect_packet(new_id("bytes")))
    mqtt_read(2)
    for i in range(4):
        mqtt_send(publish_packet("bytes/m", b"y" * (i * 100), qos=1, packet_id=i + 1))
        mqtt_read(4)
    mqtt_send(packet(0xE0, b""))
    raw.closed()
    raw.close()
    assert_deltas(router, before, {
        key("foxrouter_bytes_received_total", protocol="wamp"): wamp_in,
        key("foxrouter_bytes_sent_total", protocol="wamp"): wamp_out,
        key("foxrouter_messages_received_total", protocol="wamp"): 7,
        key("foxrouter_connections_total", protocol="wamp", transport="rawsocket"): 1,
        key("foxrouter_bytes_received_total", protocol="mqtt"): mqtt_in,
        key("foxrouter_bytes_sent_total", protocol="mqtt"): mqtt_out,
        key("foxrouter_messages_received_total", protocol="mqtt"): 6,
        key("foxrouter_publications_received_total", protocol="mqtt"): 4,
    })


def _varint(n):
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return out


def test_auth_failures_retained_keys_and_the_store(router_factory, tmp_path):
    """Refused logins of both protocols are counted; with --data, acknowledged retained
    publishes make group commits, each timed in the latency histogram."""
    router = router_factory(
        '[[role]]\nname = "backend"\npermissions = [ { uri = "", match = "prefix", publish = true } ]\n'
        '[[user]]\nauthid = "joe"\nsecret = "right"\nrole = "backend"\n',
        args=["--data", str(tmp_path / "data")])
    before = settled_scrape(router)
    bad = Client(router, new_id("bad"), 5)
    _, rc, _ = bad.connect(username="joe", password="wrong")
    assert reason_value(rc) == 0x86

    async def main():
        from wamp_client import JoinFailed
        with pytest.raises(JoinFailed):
            await connect(router, authid="joe", authmethods=["ticket"], secret="wrong")
        s = await connect(router)
        for i in range(3):
            await s.publish(f"kept.k{i}", i, options=PublishOptions(acknowledge=True, retain=True))
        s.leave()

    run(main())
    after = assert_deltas(router, before, {
        key("foxrouter_auth_failures_total", protocol="wamp"): 1,
        key("foxrouter_auth_failures_total", protocol="mqtt"): 1,
        key("foxrouter_retained_keys"): 3,
    })
    commits = after[key("foxrouter_store_commits_total")] - before[key("foxrouter_store_commits_total")]
    assert commits >= 1, "acknowledged publishes wait for a commit"
    timed = (after[key("foxrouter_store_commit_duration_seconds_count")]
             - before[key("foxrouter_store_commit_duration_seconds_count")])
    assert timed == commits, "every commit is timed"
    assert after[key("foxrouter_store_commit_duration_seconds_bucket", le="+Inf")] == \
        after[key("foxrouter_store_commit_duration_seconds_count")]
    assert after[key("foxrouter_store_batches_failed_total")] == 0


# ------------------------------------------------------------------------------ health

def test_healthz_and_readyz(router_factory, tmp_path):
    router = router_factory(args=["--data", str(tmp_path / "data")])
    status, body = get_json(router, "/healthz")
    assert (status, body) == (200, {"status": "up"})
    status, body = get_json(router, "/readyz")
    assert status == 200, body
    assert body["status"] == "ready"
    assert body["checks"]["store"] == "open"
    listeners = body["checks"]["listeners"]
    for gate in ("ws", "rawsocket", "mqtt"):
        host, port = router.addr[gate]
        assert listeners[gate] == f"{host}:{port}"
    # A session that never answers GOODBYE keeps the router closing for a while after
    # SIGTERM: it is not ready then, and says why.
    lingering = RawSocketClient(router.rawsocket)
    lingering.join()
    router.proc.send_signal(signal.SIGTERM)

    def not_ready():
        status, body = get_json(router, "/readyz")
        return body if status == 503 else None

    body = poll_until(not_ready, 5, "readyz answers 503 while shutting down")
    assert body["status"] == "not ready"
    assert any("shutting down" in r for r in body["reasons"]), body
    assert router.proc.wait(10) == 0
    lingering.close()


# ------------------------------------------------------------------------------ JSON API

def test_status_counts(router):
    s = Client(router, new_id("st"), 5)
    s.connect()
    s.subscribe("status/#")
    s.publish("status/x", b"1", qos=1, retain=True)
    status, body = get_json(router, "/api/v1/status")
    assert status == 200
    assert body["version"] and body["uptime_seconds"] >= 0 and body["store"] == "memory"
    assert body["realms"] == ["realm1"]
    assert body["shutting_down"] is False
    assert set(body["listeners"]) == {"ws", "rawsocket", "mqtt"}
    counts = body["counts"]
    assert counts["sessions"]["mqtt"] == 1 and counts["connections"] >= 1
    assert counts["subscriptions"] == 1 and counts["retained"] >= 1
    s.disconnect()


def test_a_single_node_says_so_on_the_cluster_endpoint(router):
    """/api/v1/cluster on a single node: {"mode": "single"}, and no cluster metrics (an
    entry's are checked in test_cluster.py)."""
    assert get_json(router, "/api/v1/cluster") == (200, {"mode": "single"})
    assert not [k for k in scrape(router) if k[0].startswith("foxrouter_cluster_")]


def test_sessions_are_listed_with_their_connection_and_paginated(router):
    wamp = RawSocketClient(router.rawsocket)
    welcome = wamp.join()
    mqtt5 = Client(router, new_id("five"), 5)
    mqtt5.connect()
    mqtt3 = Client(router, new_id("three"), 4, transport="ws")
    mqtt3.connect()
    mqtt3.publish("x/y", b"1", qos=1)

    def listed():
        body = listed_sessions(router)
        return body if body["total"] == 3 else None

    body = poll_until(listed, 5, "three sessions listed")
    by_protocol = {}
    for s in body["sessions"]:
        by_protocol.setdefault((s["protocol"], s["transport"]), s)
        assert s["realm"] == "realm1" and s["connected"] is True and s["authrole"] == "anonymous"
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", s["connected_since"]), s
    w = by_protocol[("wamp", "rawsocket")]
    assert w["id"] == welcome[1]
    host, port = wamp.sock.getsockname()
    assert w["peer"] == f"{host}:{port}"
    five = by_protocol[("mqtt", "tcp")]
    host, port = mqtt5.c.socket().getsockname()
    assert five["peer"] == f"{host}:{port}"
    assert five["authid"] == mqtt5.c._client_id.decode()
    three = by_protocol[("mqtt", "websocket")]
    assert three["messages_received"] >= 1 and three["messages_sent"] >= 2, three
    ids = [s["id"] for s in body["sessions"]]
    assert ids == sorted(ids), "ordered by ID"
    pages = [listed_sessions(router, offset=i, limit=1) for i in range(3)]
    assert [p["sessions"][0]["id"] for p in pages] == ids
    assert all(p["total"] == 3 and p["limit"] == 1 for p in pages)
    assert listed_sessions(router, offset=3)["sessions"] == []
    assert listed_sessions(router, protocol="mqtt")["total"] == 2
    assert listed_sessions(router, realm="realm1")["total"] == 3
    wamp.close()
    mqtt5.disconnect()
    mqtt3.disconnect()


def test_delete_kicks_a_wamp_and_an_mqtt_client_who_see_why(router):
    async def main():
        victim = await connect(router)
        sid = victim.session_id
        status, body = get_json(router, f"/api/v1/sessions/{sid}", "DELETE")
        assert (status, body) == (202, {"session": sid, "action": "disconnecting"})
        details = await asyncio.wait_for(victim.left, 5)
        assert details.reason == "wamp.close.killed"
        await asyncio.wait_for(victim.disconnected, 5)
        assert sid not in session_ids(router)
        status, body = get_json(router, f"/api/v1/sessions/{sid}", "DELETE")
        assert status == 404 and str(sid) in body["error"], body

    run(main())

    five = Client(router, new_id("k5"), 5)
    five.connect()
    three = Client(router, new_id("k3"), 4)
    three.connect()
    for client, version in ((five, 5), (three, 4)):
        sid = next(s["id"] for s in listed_sessions(router)["sessions"]
                   if s["authid"] == client.c._client_id.decode())
        status, _ = get_json(router, f"/api/v1/sessions/{sid}", "DELETE")
        assert status == 202
        rc = client.disconnects.get(timeout=5)
        if version == 5:
            assert reason_value(rc) == 0x98, f"administrative action, got {rc}"
        else:
            assert reason_value(rc) != 0, "3.1.1 has no server DISCONNECT: the connection just closes"
        poll_until(lambda: sid not in session_ids(router), 5, "the kicked session is gone")


def test_delete_ends_a_parked_mqtt_session(router):
    """A persistent session whose client is away is listed as not connected; DELETE ends it
    (200) and its will is published; the client reconnecting then finds no session."""
    cid = new_id("parked")
    watcher = Client(router, new_id("w"), 5)
    watcher.connect()
    watcher.subscribe("wills/#", qos=1)
    client = Client(router, cid, 5, clean=False)
    will = {"topic": "wills/parked", "payload": b"gone", "qos": 1,
            "properties": props(PacketTypes.WILLMESSAGE, WillDelayInterval=300)}
    client.connect(properties=props(SessionExpiryInterval=300), will=will)
    client.kill()  # an abnormal end: the will is due after its delay

    def parked():
        return next((s for s in listed_sessions(router)["sessions"]
                     if s["authid"] == cid and not s["connected"]), None)

    session = poll_until(parked, 5, "the session is parked")
    assert session["connected_since"] is None
    watcher.expect_none(0.3)  # the will waits for its delay
    status, body = get_json(router, f"/api/v1/sessions/{session['id']}", "DELETE")
    assert (status, body) == (200, {"session": session["id"], "action": "ended"})
    assert watcher.get().payload == b"gone", "ending the session publishes its will"
    assert session["id"] not in session_ids(router)
    again = Client(router, cid, 5, clean=False)
    present, rc, _ = again.connect(properties=props(SessionExpiryInterval=300))
    assert reason_value(rc) == 0 and not present
    again.disconnect()
    watcher.disconnect()


def test_subscriptions_registrations_and_retained(router):
    mqtt = Client(router, new_id("l"), 5)
    mqtt.connect()
    mqtt.subscribe("list/+/temp", qos=1)
    mqtt.publish("list/a/temp", b"21.5", qos=1, retain=True)
    mqtt.publish("list/b/temp", bytes([0xFF, 0x00]), qos=1, retain=True)

    async def main():
        s = await connect(router)
        await s.register(lambda: 1, "list.proc", options=RegisterOptions(invoke="roundrobin"))
        await s.publish("list.c.temp", 7, options=PublishOptions(acknowledge=True, retain=True))
        status, body = get_json(router, "/api/v1/registrations")
        assert status == 200 and body["total"] == 1
        reg = body["registrations"][0]
        assert (reg["uri"], reg["match"], reg["invoke"], reg["callees"]) == \
            ("list.proc", "exact", "roundrobin", [s.session_id])
        status, body = get_json(router, "/api/v1/subscriptions")
        sub = next(x for x in body["subscriptions"] if x["uri"] == "list..temp")
        assert sub["match"] == "wildcard" and len(sub["subscribers"]) == 1 and sub["realm"] == "realm1"
        for prefix in ("list/", "list."):
            status, body = get_json(router, f"/api/v1/retained?prefix={prefix}")
            assert status == 200 and body["total"] == 3, body
            items = {x["mqtt_topic"]: x for x in body["retained"]}
            assert items["list/a/temp"]["payload"] == "21.5"
            assert items["list/b/temp"]["payload_base64"] == "/wA="
            assert items["list/c/temp"]["args"] == [7]
            assert items["list/a/temp"]["topic"] == "list.a.temp" and items["list/a/temp"]["id"] > 0
        status, body = get_json(router, "/api/v1/retained?prefix=list%2Fb")
        assert body["total"] == 1
        status, body = get_json(router, "/api/v1/retained?prefix=list/&offset=1&limit=1")
        assert [x["mqtt_topic"] for x in body["retained"]] == ["list/b/temp"], "topic order"
        s.leave()

    run(main())
    mqtt.disconnect()


@pytest.mark.parametrize("method,path,status,needle", [
    ("GET", "/api/v1/sessions?limit=0", 400, "limit"),
    ("GET", "/api/v1/sessions?limit=1001", 400, "limit"),
    ("GET", "/api/v1/sessions?limit=ten", 400, "limit"),
    ("GET", "/api/v1/sessions?offset=-1", 400, "offset"),
    ("GET", "/api/v1/sessions?protocol=coap", 400, "protocol"),
    ("GET", "/api/v1/sessions?sort=id", 400, "sort"),
    ("GET", "/api/v1/subscriptions?offset=1&offset=2", 400, "twice"),
    ("GET", "/api/v1/registrations?realm=nowhere", 404, "nowhere"),
    ("GET", "/api/v1/retained?prefix=%FF", 400, "UTF-8"),
    ("GET", "/api/v1/status?verbose=1", 400, "verbose"),
    ("GET", "/metrics?x=1", 400, "'x'"),
    ("DELETE", "/api/v1/sessions/12345", 404, "12345"),
    ("DELETE", "/api/v1/sessions/abc", 400, "abc"),
    ("DELETE", "/api/v1/sessions/0", 400, "session ID"),
    ("DELETE", "/api/v1/sessions/9007199254740993", 400, "session ID"),
    ("GET", "/api/v1/sessions/12345", 405, "GET"),
    ("POST", "/metrics", 405, "POST"),
    ("GET", "/api/v2/status", 404, "/api/v2/status"),
    ("GET", "/index.html", 404, "no such endpoint"),
])
def test_errors_are_json_and_name_the_problem(router, method, path, status, needle):
    got, body = get_json(router, path, method)
    assert got == status, body
    assert body["status"] == status
    assert needle in body["error"], body


# ------------------------------------------------------------------------------ binding and token

def start_serve(args, config=None, tmp_path=None):
    """Starts `foxrouter serve` on free client ports with `args`: (proc, lines queue, the
    thread that reads stdout into it)."""
    cmd = [str(BIN), "serve", "--ws", "127.0.0.1:0", "--rawsocket", "127.0.0.1:0", "--mqtt", "127.0.0.1:0"]
    if config is not None:
        path = tmp_path / "admin.toml"
        path.write_text(config)
        cmd += ["--config", str(path)]
    proc = subprocess.Popen(cmd + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()
    pump = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
    pump.start()
    return proc, lines, pump


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()


def test_a_non_loopback_admin_address_needs_a_token(tmp_path):
    for args, config in ((["--admin", "0.0.0.0:0"], None),
                         ([], '[admin]\nlisten = "0.0.0.0:0"\n')):
        proc = subprocess.run([str(BIN), "serve", "--ws", "127.0.0.1:0", "--rawsocket", "127.0.0.1:0",
                               "--mqtt", "127.0.0.1:0", *args]
                              + (["--config", str(_write(tmp_path, config))] if config else []),
                              capture_output=True, text=True, timeout=20)
        assert proc.returncode != 0, proc.stderr
        assert "LISTEN" not in proc.stdout
        assert "admin.token" in proc.stderr, proc.stderr


def _write(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_a_configured_token_is_required(router_factory):
    router = router_factory('[admin]\ntoken = "let-me-in"\n')
    status, body = get_json(router, "/healthz")
    assert status == 200, "liveness needs no token"
    for path in ("/metrics", "/readyz", "/api/v1/status", "/api/v1/sessions"):
        for token in (None, "let-me-out", "let-me-in "):
            status, headers, body = http(router, "GET", path, token)
            if token == "let-me-in ":
                continue  # trailing blanks of a header value are not part of it
            assert status == 401, (path, token)
            assert headers["WWW-Authenticate"].startswith("Bearer")
            assert "bearer token" in json.loads(body)["error"]
        status, _, _ = http(router, "GET", path, "let-me-in")
        assert status == 200, path
    status, _, _ = http(router, "DELETE", "/api/v1/sessions/1", None)
    assert status == 401


def test_an_explicit_admin_address_must_bind_the_default_may_not(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        proc = subprocess.run([str(BIN), "serve", "--ws", "127.0.0.1:0", "--rawsocket", "127.0.0.1:0",
                               "--mqtt", "127.0.0.1:0", "--admin", f"127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=20)
        assert proc.returncode != 0
        assert f"cannot listen on 127.0.0.1:{port} (admin)" in proc.stderr, proc.stderr
    finally:
        taken.close()
    # The default address, taken by someone else: one warning, and the router runs.
    default = socket.socket()
    try:
        default.bind(("127.0.0.1", 8090))
        default.listen()
    except OSError:
        pass  # taken already: the same situation
    proc, lines, _ = start_serve([])
    try:
        addr = {}
        assert read_listeners(proc, lines, addr, 3, 15), "the client gates still start"
        assert "admin" not in addr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        stderr = proc.stderr.read()
        assert stderr.count("no admin listener") == 1, stderr
    finally:
        stop(proc)
        default.close()


def test_admin_off_prints_no_admin_line(tmp_path):
    proc, lines, pump = start_serve(["--admin", "off"])
    try:
        addr = {}
        assert read_listeners(proc, lines, addr, 3, 15)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        pump.join(5)  # every line read: stdout ended with the process
        rest = []
        while not lines.empty():
            rest.append(lines.get())
        assert not any("admin" in line for line in rest)
    finally:
        stop(proc)


# ------------------------------------------------------------------------------ logs

def test_json_logs_carry_the_peer_of_connects_disconnects_and_failed_logins(router_factory):
    router = router_factory('[[user]]\nauthid = "joe"\nsecret = "right"\nrole = "anonymous"\n',
                            args=["--log-format", "json"])
    wamp = RawSocketClient(router.rawsocket)
    wamp.join()
    wamp_peer = "%s:%d" % wamp.sock.getsockname()
    wamp.send([6, {}, "wamp.close.close_realm"])
    assert wamp.recv()[0] == 6
    wamp.close()
    bad = Client(router, new_id("bad"), 4)
    bad.connect(username="joe", password="nope")
    good = Client(router, new_id("good"), 4)
    good.connect()
    good_peer = "%s:%d" % good.c.socket().getsockname()
    good.disconnect()

    def records():
        found = []
        for line in router.log_path.read_text().splitlines():
            record = json.loads(line)
            found.append((record["fields"].get("message"), record["fields"].get("peer")))
        return found

    wanted = {("WAMP session opened", wamp_peer), ("WAMP session closed", wamp_peer),
              ("MQTT client connected", good_peer), ("MQTT client disconnected", good_peer)}
    poll_until(lambda: wanted <= set(records()), 5, "connect and disconnect lines with the peer")
    refused = [peer for message, peer in records() if message == "MQTT login refused"]
    assert len(refused) == 1 and re.match(r"127\.0\.0\.1:\d+$", refused[0]), refused


def test_text_logs_to_a_file_have_no_colour_codes(router):
    s = Client(router, new_id("c"), 4)
    s.connect()
    s.disconnect()
    poll_until(lambda: "MQTT client disconnected" in router.logs(), 5, "a log line")
    assert "\x1b[" not in router.log_path.read_text()
