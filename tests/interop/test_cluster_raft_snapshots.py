"""Raft snapshots and log compaction on the sync tier, with real processes: sync nodes that
snapshot every 20 applied entries compact their Raft logs; a sync node killed with -9 and
restarted starts from its latest snapshot (not from Raft index 1); one that stays down
while the others compact past it gets the leader's snapshot and pulls the resolutions it
lacks from a peer. Sync nodes keep only the 16 newest resolutions in memory
(`--resolution-cache 16`), so that fill is read from the peer's disk. Throughout, publishes are acknowledged and the log read back from an
entry holds every acknowledged message once, with the ID it was acknowledged with."""

import asyncio
import re

import pytest
from autobahn.wamp.types import PublishOptions

from cluster_nodes import running_cluster
from conftest import poll_until
from test_admin import get_json
from test_cluster_faults import read_log
from wamp_client import connect, run

ACK = PublishOptions(acknowledge=True)
INTERVAL = 20
SYNCS = (7, 8, 9)
CACHE = 16


@pytest.fixture
def cluster():
    with running_cluster(sync_snapshot_interval=INTERVAL,
                         node_args=["--resolution-cache", str(CACHE)]) as c:
        yield c


def sync_status(node):
    return get_json(node, "/api/v1/status")[1]["sync"]


async def publish(entry, prefix, count, acked, in_flight=4):
    """`count` acknowledged publishes on `f.snap`, `in_flight` at a time; payload -> ID."""
    session = await connect(entry)

    async def one(i):
        payload = f"{prefix}-{i}"
        acked[payload] = (await session.publish("f.snap", payload, options=ACK)).id

    for start in range(0, count, in_flight):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + in_flight))))
    session.leave()


def rebuilt_from(node):
    """The snapshot index of the node's latest `sync state rebuilt` log line."""
    lines = [l for l in node.log_path.read_text().splitlines() if "sync state rebuilt" in l]
    assert lines, node.logs()
    found = re.search(r"started_from_snapshot=(\d+)", lines[-1])
    assert found, lines[-1]
    return int(found.group(1))


def check_log(got, acked):
    ids = [i for i, _ in got]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "IDs strictly increase"
    in_log = {p: i for i, p in got}
    assert len(in_log) == len(got), "no message is in the log twice"
    lost = [p for p in acked if p not in in_log]
    assert not lost, f"acknowledged but lost: {lost[:5]}"
    wrong = [p for p, i in acked.items() if in_log[p] != i]
    assert not wrong, f"acknowledged with another ID than the log's: {wrong[:5]}"


@pytest.mark.timeout(180)
def test_sync_nodes_compact_restart_from_a_snapshot_and_fill_a_lagging_one(cluster):
    syncs = [cluster.nodes[i] for i in SYNCS]
    acked = {}

    # Enough votes that every sync node snapshots (and compacts) a few times.
    run(publish(cluster.entries[0], "a", 150, acked))

    def all_compacted():
        views = [sync_status(n) for n in syncs]
        return all(v["snapshot_index"] >= 2 * INTERVAL for v in views) and views

    views = poll_until(all_compacted, 20, f"every sync node snapshotted past index {2 * INTERVAL}")
    print("before the restart:", views)
    for node, view in zip(syncs, views):
        assert view["started_from_snapshot"] == 0, "a fresh node replays nothing"
        assert rebuilt_from(node) == 0

    # kill -9 and restart one sync node (the leader, when one is known): it starts from its
    # latest snapshot, not from Raft index 1.
    victim = cluster.nodes[cluster.sync_leader() or 8]
    cluster.restart(victim.id)
    started = rebuilt_from(victim)
    assert started >= 2 * INTERVAL, f"started from snapshot {started}"
    poll_until(lambda: sync_status(victim)["started_from_snapshot"] == started, 10,
               "its admin status names the snapshot it started from")
    run(publish(cluster.entries[1], "b", 60, acked))

    # One sync node stays down while the others compact past its log: on its return the
    # leader sends it a snapshot and it pulls the resolutions it lacks from a peer.
    lagging = next(n for n in syncs if n is not victim)
    behind = sync_status(lagging)["commit_index"]
    lagging.kill9()
    run(publish(cluster.entries[2], "c", 150, acked))
    others = [n for n in syncs if n is not lagging]
    poll_until(lambda: all(sync_status(n)["snapshot_index"] > behind + INTERVAL for n in others),
               20, "the two live sync nodes compacted past the lagging one's log")
    cluster.restart(lagging.id)

    def caught_up():
        views = {n.id: sync_status(n) for n in syncs}
        counts = {v["resolutions"] for v in views.values()}
        return len(counts) == 1 and all(v["filling_to"] == 0 for v in views.values()) and views

    run(publish(cluster.entries[0], "d", 20, acked))
    views = poll_until(caught_up, 30, "the lagging sync node holds every resolution again")
    print("after the fill:", views)
    assert all(v["resolutions_cached"] <= CACHE < v["resolutions"] for v in views.values()), views
    text = lagging.log_path.read_text()
    assert "sync installed the leader's snapshot" in text, lagging.logs()
    assert "sync resolutions filled" in text, lagging.logs()

    # The cluster acknowledges on, and the log read back is intact.
    run(publish(cluster.entries[1], "e", 20, acked))

    async def read_back():
        return await read_log(cluster.entries[2], "f.snap", len(acked))

    check_log(run(read_back()), acked)
