"""The masterfree cluster as real processes (3 entries, 3 ndb, 3 sync), used by autobahn-python
and paho-mqtt like a single router: acknowledgements carry permanent IDs, every entry
delivers the same events in the same order, `after` replays across entries, and MQTT
sessions may outlive their connection. Retained keys and the sync service:
`test_cluster_sync.py`; MQTT sessions across entries: `test_cluster_mqtt_sessions.py`."""

import asyncio
import queue
import signal
import time

import pytest
from autobahn.wamp import message as wamp_message
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from cluster_nodes import running_cluster
from conftest import poll_until
from mqtt_client import Client, new_id, props
from wamp_client import abort_transport, connect, run, wait_until

ACK = PublishOptions(acknowledge=True)


@pytest.fixture
def cluster():
    with running_cluster() as c:
        yield c


async def subscribe_events(session, topic, **extra):
    """(publication ID, value) of every event, in arrival order."""
    got = []
    session.extra_options[wamp_message.Subscribe] = extra
    try:
        await session.subscribe(lambda v, details=None: got.append((details.publication, v)), topic,
                                options=SubscribeOptions(details=True))
    finally:
        session.extra_options.pop(wamp_message.Subscribe, None)
    return got


def test_every_entry_delivers_the_same_sequence_to_wamp_and_mqtt(cluster):
    per_entry = 40

    async def main():
        wamp_subs = []
        mqtt_subs = []
        for entry in cluster.entries:
            session = await connect(entry)
            wamp_subs.append(await subscribe_events(session, "c.seq"))
            m = Client(entry, new_id(), 5)
            m.connect()
            m.subscribe("c/seq", qos=1)
            mqtt_subs.append(m)
        publishers = [await connect(entry) for entry in cluster.entries]
        mqtt_publishers = []
        for entry in cluster.entries:
            m = Client(entry, new_id(), 4)
            m.connect()
            mqtt_publishers.append(m)

        async def wamp_publisher(index, session):
            # 8 publishes in flight per entry.
            ids = []
            for batch in range(per_entry // 8):
                futures = [session.publish("c.seq", f"w{index}-{batch * 8 + k}", options=ACK) for k in range(8)]
                ids += [p.id for p in await asyncio.gather(*futures)]
            return ids

        def mqtt_publisher(index, client):
            for k in range(per_entry):
                client.publish("c/seq", f'"m{index}-{k}"'.encode(), qos=1)

        loop = asyncio.get_running_loop()
        mqtt_done = [loop.run_in_executor(None, mqtt_publisher, i, c) for i, c in enumerate(mqtt_publishers)]
        acked = await asyncio.gather(*[wamp_publisher(i, s) for i, s in enumerate(publishers)])
        await asyncio.gather(*mqtt_done)
        total = 3 * per_entry * 2
        await wait_until(lambda: all(len(g) >= total for g in wamp_subs), timeout=20, what="every event on every entry")
        reference = wamp_subs[0]
        ids = [i for i, _ in reference]
        assert ids == sorted(ids) and len(set(ids)) == total, "IDs strictly increasing, no duplicate"
        for got in wamp_subs[1:]:
            assert got == reference, "the same (ID, payload) sequence on every entry"
        acked_ids = {i for per in acked for i in per}
        assert acked_ids <= set(ids), "every acknowledged ID was delivered"
        for index, per in enumerate(acked):
            assert per == sorted(per), f"one publisher's messages keep their order (entry {index + 1})"
        values = [v for _, v in reference]
        for m in mqtt_subs:
            got = [m.get(timeout=10).payload.decode().strip('"') for _ in range(total)]
            assert got == values, "MQTT subscribers see the same order as WAMP ones"

    run(main(), timeout=90)


def test_fire_and_forget_publishes_testaments_and_wills_reach_every_entry(cluster):
    """MQTT QoS 0 and unacknowledged WAMP publishes (nobody waits for their ID), a WAMP
    testament and an MQTT will (their session's last publication) are ordered through the
    log like any other: subscribers on the other entries receive them."""
    one, two, three = cluster.entries
    device = Client(one, new_id("dev"), 5)
    device.connect(will={"topic": "c/status/dev", "payload": b"offline", "qos": 1})
    watcher = Client(three, new_id(), 5)
    watcher.connect()
    watcher.subscribe("c/status/dev", qos=1)

    async def main():
        listener = await connect(two)
        got = await subscribe_events(listener, "c.status.app")
        app = await connect(one)
        app.publish("c.status.app", "hello")  # no acknowledge: nothing waits for it
        await app.call("wamp.session.add_testament", "c.status.app", ["gone"], {})
        abort_transport(app)
        try:
            await wait_until(lambda: [v for _, v in got] == ["hello", "gone"], timeout=10,
                             what="entry 2 receives entry 1's publish and testament")
        except AssertionError as e:
            raise AssertionError(f"{e}; got {got}") from None
        assert 0 < got[0][0] < got[1][0]

    run(main(), timeout=30)
    device.publish("c/status/dev", b"online", qos=0)
    time.sleep(0.3)  # paho sends from its loop thread; a kill right away may beat it
    device.kill()
    for expected in (b"online", b"offline"):
        got = watcher.get(timeout=10)
        assert (got.topic, got.payload) == ("c/status/dev", expected)
    watcher.disconnect()


def test_a_testament_outlives_its_entry_killed_with_9(cluster):
    """The testament is in the log from the moment it was added: when its session's entry
    dies and its lease expires, another entry publishes it, once."""
    one, two, _ = cluster.entries

    async def main():
        listener = await connect(two)
        got = await subscribe_events(listener, "c.status.crash")
        app = await connect(one)
        await app.call("wamp.session.add_testament", "c.status.crash", ["crashed"], {})
        flushed = await connect(one)
        await flushed.call("wamp.session.add_testament", "c.status.crash", ["flushed"], {})
        assert await flushed.call("wamp.session.flush_testaments") == 1
        await asyncio.sleep(0.5)  # both ordered (add_testament answers before that)
        killed = time.monotonic()
        one.kill9()
        await wait_until(lambda: got, timeout=10, what="another entry publishes the testament")
        print(f"kill -9 to the testament on another entry: {(time.monotonic() - killed) * 1000:.0f} ms")
        await asyncio.sleep(1.0)
        assert [v for _, v in got] == ["crashed"], got

    run(main(), timeout=40)


def test_a_publish_acknowledged_before_another_is_sent_has_the_smaller_id(cluster):
    async def main():
        sessions = [await connect(entry) for entry in cluster.entries]
        ids = []
        for k in range(30):
            ids.append((await sessions[k % 3].publish("c.rt", k, options=ACK)).id)
        assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
        now_ms = int(time.time() * 1000)
        # IDs read as time: (ms since 2020-01-01) << 12, DESIGN.md.
        assert abs((ids[-1] >> 12) + 1_577_836_800_000 - now_ms) < 60_000

    run(main(), timeout=60)


def test_after_replays_what_another_entry_published_then_goes_live(cluster):
    async def main():
        first, _, third = cluster.entries
        pub = await connect(first)
        ids = [(await pub.publish("c.hist", k, options=ACK)).id for k in range(10)]
        sub = await connect(third)
        got = await subscribe_events(sub, "c.hist", after=ids[4])
        live = [(await pub.publish("c.hist", k, options=ACK)).id for k in range(10, 15)]
        await wait_until(lambda: len(got) >= 10, timeout=10, what="replay and live events")
        await asyncio.sleep(0.2)
        assert got == list(zip(ids[5:] + live, range(5, 15))), "no gap, no duplicate, in order"

    run(main(), timeout=60)


def test_mqtt_sessions_that_outlive_their_connection_are_offered(cluster):
    """MQTT 5 clients keep the Session Expiry they ask for, 3.1.1 clients their persistent
    session (their takeover across entries: `test_cluster_mqtt_sessions.py`)."""
    entry = cluster.entries[0]
    v5 = Client(entry, new_id(), 5)
    _, reason, properties = v5.connect(properties=props(SessionExpiryInterval=300))
    assert reason == 0
    assert getattr(properties, "SessionExpiryInterval", 300) == 300, "the session outlives its connection"
    assert getattr(properties, "RetainAvailable", 1) == 1, "retained messages are served"
    v3 = Client(entry, new_id(), 4, clean=False)
    _, reason, _ = v3.connect()
    assert reason == 0, "a 3.1.1 persistent session is served"
    v5.disconnect()
    v3.disconnect()


def test_no_acknowledgement_without_a_quorum_and_acks_resume_after_restart(cluster):
    v5 = Client(cluster.entries[1], new_id(), 5)
    v5.connect()
    v5_acks = queue.Queue()
    v5.c.on_publish = lambda c, u, mid, rc, p: v5_acks.put(rc)
    v3 = Client(cluster.entries[2], new_id(), 4)
    v3.connect()

    async def main():
        pub = await connect(cluster.entries[0])
        await pub.publish("c.q", 0, options=ACK)
        cluster.nodes[4].kill9()
        cluster.nodes[5].kill9()
        started = time.monotonic()
        # MQTT 5: PUBACK 0x80; MQTT 3.1.1 (no failure acknowledgement): disconnected.
        v5.c.publish("c/q", b"v5", qos=1)
        v3.c.publish("c/q", b"v3", qos=1)
        with pytest.raises(ApplicationError) as refused:
            await pub.publish("c.q", 1, options=ACK)
        assert time.monotonic() - started < 15, "the refusal comes within a bounded time"
        assert refused.value.error == "wamp.error.unavailable", refused.value
        reason = await asyncio.get_running_loop().run_in_executor(None, v5_acks.get, True, 15)
        assert reason == 0x80, f"MQTT 5 PUBACK reason {reason}"
        await asyncio.get_running_loop().run_in_executor(None, v3.disconnects.get, True, 15)
        cluster.restart(4)
        cluster.restart(5)
        restarted = time.monotonic()
        while True:
            try:
                await pub.publish("c.q", 2, options=ACK)
                break
            except ApplicationError:
                assert time.monotonic() - restarted < 10, "acks resume after the ndb restart"
        print(f"acks resumed {time.monotonic() - restarted:.2f} s after two ndb restarted")
        assert time.monotonic() - restarted < 2, "acks resume within 2 s"

    run(main(), timeout=90)


def test_two_sync_nodes_down_means_no_acknowledgement_until_they_return(cluster):
    async def main():
        pub = await connect(cluster.entries[0])
        await pub.publish("c.s", 0, options=ACK)
        cluster.nodes[7].kill9()
        cluster.nodes[8].kill9()
        with pytest.raises(ApplicationError) as refused:
            await pub.publish("c.s", 1, options=ACK)
        assert refused.value.error == "wamp.error.unavailable", refused.value
        cluster.restart(7)
        cluster.restart(8)
        restarted = time.monotonic()
        while True:
            try:
                await pub.publish("c.s", 2, options=ACK)
                break
            except ApplicationError:
                assert time.monotonic() - restarted < 10, "acks resume after the sync restart"
        print(f"acks resumed {time.monotonic() - restarted:.2f} s after two sync restarted")
        assert time.monotonic() - restarted < 2, "acks resume within 2 s"

    run(main(), timeout=90)


def test_sigterm_stops_every_role_cleanly(cluster):
    async def main():
        session = await connect(cluster.entries[0])
        await session.publish("c.term", 1, options=ACK)

    run(main(), timeout=30)
    for node_id in (1, 4, 7):
        started = time.monotonic()
        assert cluster.nodes[node_id].terminate(timeout=15) == 0, cluster.nodes[node_id].logs()
        assert time.monotonic() - started < 15


def test_an_entry_stopped_with_sigterm_answers_the_publishes_in_flight_before_goodbye(cluster):
    """A clean stop drains: each acknowledged publish a client has in flight when its entry
    is told to stop gets its PUBLISHED (or an ERROR) before the GOODBYE, so no publisher is
    left to its own timeout to learn what became of it (a WAMP publisher cannot ask); one
    sent while the entry drains is refused at once. The sync nodes are held (SIGSTOP) for a
    moment around the SIGTERM, so that publishes are surely read and waiting then."""
    outcomes = []

    async def publisher(session, n):
        i = 0
        while True:
            try:
                publication = await asyncio.wait_for(session.publish("c.drain", f"{n}-{i}", options=ACK), 10)
            except asyncio.TimeoutError:
                outcomes.append(("unanswered", n))
                return
            except ApplicationError as e:
                outcomes.append(("refused", e.error))
                return
            except Exception:
                return  # the session ended: its next publish fails at once
            outcomes.append(("acked", publication.id))
            i += 1

    async def main():
        sessions = [await connect(cluster.entries[0]) for _ in range(4)]
        tasks = [asyncio.ensure_future(publisher(s, n)) for n, s in enumerate(sessions)]
        await wait_until(lambda: len(outcomes) >= 100, timeout=20, what="acknowledged publishes")
        syncs = [cluster.nodes[i].proc for i in (7, 8, 9)]
        loop = asyncio.get_running_loop()
        try:
            for proc in syncs:
                proc.send_signal(signal.SIGSTOP)
            await asyncio.sleep(0.5)
            before = len(outcomes)
            stopped = loop.run_in_executor(None, cluster.nodes[1].terminate, 15)
            await asyncio.sleep(0.3)
        finally:
            for proc in syncs:
                proc.send_signal(signal.SIGCONT)
        assert await stopped == 0
        await asyncio.wait(tasks, timeout=15)
        unanswered = [o for o in outcomes if o[0] == "unanswered"]
        assert not unanswered, f"{len(unanswered)} publishes in flight got no answer: {cluster.nodes[1].logs()}"
        after = outcomes[before:]
        assert sum(1 for o in after if o[0] == "acked") >= 4, f"the held publishes were acknowledged: {after}"
        refused = [o for o in after if o[0] == "refused"]
        assert all(uri == "wamp.error.unavailable" for _, uri in refused), refused
        for session in sessions:
            kinds = [type(m).__name__ for m in session.received]
            assert "Goodbye" in kinds, kinds[-5:]
            assert "Published" not in kinds[kinds.index("Goodbye"):], \
                f"PUBLISHED after the router's GOODBYE: {kinds[-5:]}"

    run(main(), timeout=60)


def test_an_entry_admin_listener_shows_the_cluster_its_acks_and_readiness(cluster):
    """GET /api/v1/cluster on an entry lists the nine members with their links; the
    foxrouter_cluster_* metrics count exactly the acknowledgements this entry gave and
    refused; /readyz says not ready while two ndb are down, and ready once they return."""
    from test_admin import assert_deltas, get_json, key, scrape

    entry = cluster.entries[0]

    def linked_everywhere():
        status, view = get_json(entry, "/api/v1/cluster")
        assert status == 200, view
        others = [m for m in view["members"] if m["role"] != "entry"]
        return all(m["linked"] for m in others) and view

    view = poll_until(linked_everywhere, 20, "entry 1 linked to every ndb and sync node")
    assert view["mode"] == "entry" and view["node"] == 1
    assert sorted((m["id"], m["role"]) for m in view["members"]) == \
        [(1, "entry"), (2, "entry"), (3, "entry"), (4, "ndb"), (5, "ndb"), (6, "ndb"),
         (7, "sync"), (8, "sync"), (9, "sync")]
    assert [m["linked"] for m in view["members"] if m["role"] == "entry"] == [None] * 3
    assert get_json(entry, "/readyz")[0] == 200
    before = scrape(entry)
    other_before = scrape(cluster.entries[1])

    async def publish(count):
        pub = await connect(entry)
        for i in range(count):
            await pub.publish("c.admin", i, options=ACK)
        pub.leave()

    run(publish(20))
    after = assert_deltas(entry, before, {key("foxrouter_cluster_acks_total"): 20,
                                          key("foxrouter_cluster_ack_errors_total"): 0,
                                          key("foxrouter_cluster_ack_duration_seconds_count"): 20})
    assert after[key("foxrouter_cluster_peer_linked", peer="4", role="ndb")] == 1
    assert after[key("foxrouter_cluster_last_applied_id")] >= before[key("foxrouter_cluster_last_applied_id")]
    # Entry 2 applied the same events but acknowledged none of them.
    assert scrape(cluster.entries[1])[key("foxrouter_cluster_acks_total")] == \
        other_before[key("foxrouter_cluster_acks_total")]
    status, view = get_json(entry, "/api/v1/cluster")
    assert view["acks"] >= 20 and view["ack_latency_ms"]["p99_at_most"] is not None, view

    cluster.nodes[4].kill9()
    cluster.nodes[5].kill9()

    def not_ready():
        status, body = get_json(entry, "/readyz")
        return status == 503 and body

    body = poll_until(not_ready, 15, "not ready without a majority of ndb")
    assert any("ndb" in reason for reason in body["reasons"]), body
    assert body["checks"]["cluster"]["ndb_linked"] == 1, body

    async def refused():
        pub = await connect(entry)
        with pytest.raises(ApplicationError):
            await pub.publish("c.admin", "lost", options=ACK)
        pub.leave()

    before = scrape(entry)
    run(refused(), timeout=60)
    assert_deltas(entry, before, {key("foxrouter_cluster_ack_errors_total"): 1,
                                  key("foxrouter_cluster_acks_total"): 0})
    cluster.restart(4)
    cluster.restart(5)
    poll_until(lambda: get_json(entry, "/readyz")[0] == 200, 20, "ready again")



def test_an_entry_reports_every_ndb_and_sync_nodes_state_and_follows_a_new_leader(cluster):
    """Entries ask every ndb and sync node for its state each second (STATUS_QUERY):
    /api/v1/cluster names the leader and term the sync nodes name themselves, each ndb's
    applied index and last ID (which reach what was acknowledged), lags of 0 once quiet,
    and the foxrouter_cluster_* gauges say the same; after kill -9 of the leader, the entry
    names a new leader in a higher term and shows the dead node unlinked."""
    from test_admin import get_json, key, scrape

    entry = cluster.entries[0]
    syncs = [cluster.nodes[i] for i in (7, 8, 9)]
    assert get_json(entry, "/api/v1/status")[1]["store"] == "cluster"

    def agreed():
        own = [get_json(n, "/api/v1/status")[1]["sync"] for n in syncs]
        status, view = get_json(entry, "/api/v1/cluster")
        leaders = {s["leader_id"] for s in own}
        reported = all(m["status"] is not None and m["status"]["age_ms"] <= 3000
                       for m in view["members"] if m["role"] != "entry")
        if len(leaders) != 1 or None in leaders or not reported:
            return False
        return view["leader"] == leaders.pop() and view

    view = poll_until(agreed, 20, "the entry names the leader the sync nodes name")
    leader, term = view["leader"], view["term"]
    assert get_json(cluster.nodes[leader], "/api/v1/status")[1]["sync"]["term"] == term
    for member in view["members"]:
        if member["role"] == "entry":
            assert member["status"] is None, member

    async def publish(count):
        pub = await connect(cluster.entries[2])
        ids = [(await pub.publish("c.report", i, options=ACK)).id for i in range(count)]
        pub.leave()
        return ids

    ids = run(publish(12))

    def caught_up():
        status, view = get_json(entry, "/api/v1/cluster")
        ndbs = [m for m in view["members"] if m["role"] == "ndb"]
        syncs_seen = [m for m in view["members"] if m["role"] == "sync"]
        done = all(m["status"]["last_id"] >= ids[-1] and m["status"]["lag"] == 0 for m in ndbs) \
            and all(m["status"]["lag"] == 0 for m in syncs_seen) \
            and view["log_end"] >= ids[-1] and view["last_applied"] >= ids[-1]
        return done and view

    view = poll_until(caught_up, 15, "every ndb reports the acknowledged IDs, no lag")
    ndb = next(m for m in view["members"] if m["role"] == "ndb")["status"]
    assert ndb["applied_index"] >= 1 and ndb["temp_segments"] >= 0, ndb
    sync = next(m for m in view["members"] if m["id"] == leader)["status"]
    assert sync["leader"] == leader and sync["term"] == term and sync["resolutions"] >= 1, sync
    sample = scrape(entry)
    assert sample[key("foxrouter_cluster_sync_leader")] == leader
    assert sample[key("foxrouter_cluster_raft_term")] == term
    assert sample[key("foxrouter_cluster_log_end_id")] >= ids[-1]
    assert sample[key("foxrouter_cluster_member_lag", peer="4", role="ndb")] == 0

    cluster.nodes[leader].kill9()

    def new_leader():
        status, view = get_json(entry, "/api/v1/cluster")
        dead = next(m for m in view["members"] if m["id"] == leader)
        moved = view["leader"] not in (None, leader) and view["term"] > term
        return moved and dead["linked"] is False and view

    view = poll_until(new_leader, 20, "a new leader in a higher term, the old one unlinked")
    assert view["leader"] in (7, 8, 9)
    assert scrape(entry)[key("foxrouter_cluster_sync_leader")] == view["leader"]


def test_ndb_and_sync_nodes_serve_health_readiness_and_metrics(cluster):
    """Every ndb and sync node has its own admin listener (loopback, from `cluster init`):
    the sync tier shows one leader that every sync node names and a commit index that
    grows with publishes; every ndb's permanent log grows by what was published (and the
    entries' beats), the same on each, and its store fsyncs; a sync node is not ready while two of three are down."""
    from test_admin import get_json, key, scrape

    syncs = [cluster.nodes[i] for i in (7, 8, 9)]
    ndbs = [cluster.nodes[i] for i in (4, 5, 6)]
    for node in syncs + ndbs:
        assert get_json(node, "/healthz") == (200, {"status": "up"})

    def agreed_leader():
        leaders = {get_json(n, "/api/v1/status")[1]["sync"]["leader_id"] for n in syncs}
        ready = all(get_json(n, "/readyz")[0] == 200 for n in syncs + ndbs)
        return ready and len(leaders) == 1 and None not in leaders and leaders.pop()

    leader = poll_until(agreed_leader, 20, "one sync leader named by all, every node ready")
    samples = {n.id: scrape(n) for n in syncs}
    assert sum(s[key("foxrouter_raft_leader")] for s in samples.values()) == 1
    assert samples[leader][key("foxrouter_raft_leader")] == 1
    before_log = {n.id: get_json(n, "/api/v1/status")[1]["ndb"]["log_records"] for n in ndbs}
    before_commit = samples[leader][key("foxrouter_raft_commit_index")]
    before_fsyncs = scrape(ndbs[0])[key("foxrouter_node_store_fsyncs_total")]

    async def publish(count):
        pub = await connect(cluster.entries[1])
        for i in range(count):
            await pub.publish("c.nodes", i, options=ACK)
        pub.leave()

    run(publish(10))

    def logs_grew():
        # The entries' lease beats are records of the log too: every ndb holds the same
        # log, at least the 10 new records longer.
        now = {n.id: get_json(n, "/api/v1/status")[1]["ndb"]["log_records"] for n in ndbs}
        return len(set(now.values())) == 1 and all(now[i] - before_log[i] >= 10 for i in now) and now

    poll_until(logs_grew, 10, "every ndb's permanent log holds the 10 new records, the same on each")
    # A small log: memory holds all of it, and says how much.
    ndb = get_json(ndbs[0], "/api/v1/status")[1]["ndb"]
    assert ndb["log_cached"]["records"] == ndb["log_records"] > 0, ndb
    assert ndb["log_cached"]["bytes"] > 10 * ndb["log_cached"]["records"], ndb
    sample = scrape(ndbs[0])
    assert sample[key("foxrouter_ndb_log_cached_records")] >= ndb["log_records"]
    assert sample[key("foxrouter_ndb_log_cached_bytes")] >= ndb["log_cached"]["bytes"]
    after = scrape(cluster.nodes[leader])
    assert after[key("foxrouter_raft_commit_index")] > before_commit
    assert scrape(ndbs[0])[key("foxrouter_node_store_fsyncs_total")] > before_fsyncs
    assert after[key("foxrouter_cluster_peer_linked", peer="4", role="ndb")] == 1
    assert get_json(cluster.nodes[leader], "/api/v1/cluster")[0] == 404  # an entry's endpoint

    survivor = next(n for n in syncs if n.id != leader)
    for node in syncs:
        if node is not survivor:
            node.kill9()

    def not_ready():
        status, body = get_json(survivor, "/readyz")
        return status == 503 and body

    body = poll_until(not_ready, 15, "a lone sync node is not ready")
    assert any("leader" in r for r in body["reasons"]), body
