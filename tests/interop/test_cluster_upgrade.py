"""A rolling upgrade with real binaries: a cluster of the previous protocol version's
foxrouter (built from an earlier commit by scripts/upgrade-base.sh) runs under acknowledged
load while each of its nine nodes in turn is stopped (SIGTERM) and started again as this
build, on the same data directory: the sync followers, the sync leader, the ndb nodes,
then the entries. Mixed versions talk (a link between an upgraded node and an old one
negotiates the old version), acknowledgements never pause long, and afterwards every link
speaks the new version and no acknowledged message is lost (docs/cluster.md, *Rolling
upgrades*)."""

import asyncio
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from cluster_load import Load, in_thread
from cluster_nodes import admin_json, running_cluster
from conftest import BIN, ROOT, poll_until
from wamp_client import run, wait_until

ENTRY_CONFIG = """
[limits]
history_max_messages = 1000000
"""
IN_FLIGHT_PER_ENTRY = 4
# No acknowledgement for this long, anywhere in the cluster, fails the test: a node's
# replacement may cost a sync election or an entry's publishers a reconnect, not more.
PAUSE_MAX_SECONDS = 5.0
# Seconds in a row with less than half the steady acknowledgement rate, at most.
SLOW_SECONDS_MAX = 3
# How long the cluster runs after each node's upgrade, mixed, before the next.
DWELL_SECONDS = 2.0


def base_binary():
    """The previous version's binary: FOXROUTER_BASE_BIN (scripts/test.sh builds it before
    the end-to-end tests), else built now (cached in the target directory)."""
    path = os.environ.get("FOXROUTER_BASE_BIN")
    if path:
        return Path(path)
    done = subprocess.run(["bash", str(ROOT / "scripts" / "upgrade-base.sh")], check=True,
                          capture_output=True, text=True, timeout=1800)
    return Path(done.stdout.strip().splitlines()[-1])


def ready(node):
    try:
        with urllib.request.urlopen(node.admin_url + "/readyz", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def node_links(node):
    """An upgraded ndb or sync node's own view: the protocol range it speaks and the
    version each of its links negotiated ({peer ID: version or None})."""
    status = admin_json(node, "/api/v1/status")
    links = {m["id"]: m["protocol"] for m in status["members"] if m["linked"] is not None}
    return status["protocol"], links


@pytest.mark.timeout(900)
def test_the_previous_version_is_upgraded_node_by_node_under_load():
    base = base_binary()
    assert base.exists() and base.resolve() != BIN.resolve()
    with running_cluster(bin=base, entry_config=ENTRY_CONFIG) as cluster:
        async def main():
            load = Load(cluster)
            tasks = load.start(IN_FLIGHT_PER_ENTRY)
            await wait_until(lambda: len(load.acked) >= 200, timeout=60,
                             what="acknowledgements from the base cluster")
            count, began = len(load.acked), time.monotonic()
            await asyncio.sleep(5)
            steady = (len(load.acked) - count) / (time.monotonic() - began)
            print(f"base cluster: {steady:.0f} acks/s")

            leader = await in_thread(poll_until, cluster.sync_leader, 20, "a sync leader")
            order = [n for n in (7, 8, 9) if n != leader] + [leader, 4, 5, 6, 1, 2, 3]
            upgraded = set()
            new_max = None
            upgrade_began = time.monotonic()
            for node_id in order:
                before = len(load.acked)
                node = await in_thread(cluster.replace, node_id, BIN)
                upgraded.add(node_id)
                # Ready before the next one, as an operator would wait: an ndb or sync node
                # by its /readyz, an entry when its own publishers are acknowledged again.
                if node.role == "entry":
                    index = cluster.entries.index(node)
                    mine = load.acks_by_entry[index]
                    await wait_until(lambda: load.acks_by_entry[index] >= mine + 100, timeout=30,
                                     what=f"acknowledgements through upgraded entry {node_id}")
                else:
                    await in_thread(poll_until, lambda: ready(node), 30, f"node {node_id} ready")
                # The mixed cluster carries the load for a while before the next step.
                count = len(load.acked)
                await asyncio.sleep(DWELL_SECONDS)
                assert len(load.acked) >= count + 100, f"acknowledgements go on after node {node_id}"
                print(f"{time.monotonic() - upgrade_began:5.1f} s: node {node_id} ({node.role}) upgraded: "
                      f"listening {node.restart_seconds:.2f} s "
                      f"after SIGTERM, {len(load.acked)} acked, {load.failed} failed")
                if node.role == "entry":
                    continue
                # An upgraded ndb or sync node speaks the new version to upgraded peers and
                # the old one to the others, over the same links.
                def linked_all():
                    protocol, links = node_links(node)
                    return (protocol, links) if all(v is not None for v in links.values()) else None
                (protocol, links) = await in_thread(poll_until, linked_all, 20,
                                                    f"node {node_id} linked to every ndb and sync node")
                new_max = protocol["max"]
                for peer, version in links.items():
                    if peer in upgraded:
                        assert version == new_max, f"node {node_id} to upgraded {peer}: {links}"
                    else:
                        assert protocol["min"] <= version < new_max, f"node {node_id} to old {peer}: {links}"
            pause = load.longest_pause(upgrade_began)
            upgrade_seconds = time.monotonic() - upgrade_began

            # Every entry's links now speak the new version.
            def all_new():
                views = [admin_json(e, "/api/v1/cluster") for e in cluster.entries]
                versions = [m["protocol"] for v in views for m in v["members"] if m["linked"] is not None]
                return versions if versions and all(v == new_max for v in versions) else None
            await in_thread(poll_until, all_new, 20, f"every entry's links at protocol {new_max}")

            load.stop = True
            await asyncio.wait(tasks, timeout=30)
            # Seconds of the upgrade in which fewer than half the steady acks came.
            per_second = {}
            for t in load.ack_times:
                if upgrade_began <= t < upgrade_began + upgrade_seconds:
                    per_second[int(t - upgrade_began)] = per_second.get(int(t - upgrade_began), 0) + 1
            slow = [s for s in range(int(upgrade_seconds)) if per_second.get(s, 0) < steady / 2]
            run, longest_run = 0, 0
            for s in range(int(upgrade_seconds)):
                run = run + 1 if s in slow else 0
                longest_run = max(longest_run, run)
            print(f"upgrade of 9 nodes took {upgrade_seconds:.1f} s; longest pause {pause:.2f} s; "
                  f"acks per second: {[per_second.get(s, 0) for s in range(int(upgrade_seconds))]}")
            assert pause < PAUSE_MAX_SECONDS, f"no acknowledgement for {pause:.2f} s"
            assert longest_run <= SLOW_SECONDS_MAX, \
                f"below half the steady {steady:.0f} acks/s for {longest_run} s in a row (seconds {slow})"
            reference = await load.check_log(cluster.entries)
            print(f"{len(load.acked)} acked, {load.failed} failed or unknown, {len(reference)} in the log")

        run(main(), timeout=840)
