"""The cluster under faults, with real processes and kill -9: while publishers on all three
entries keep 16+ acknowledged publishes in flight, a random minority (one entry, one ndb or
one sync, often the Raft leader) is killed every few seconds and restarted. Afterwards no
acknowledged message is lost or duplicated, IDs strictly increase, and every entry replays
the identical log. Then all nine are killed and restarted: the log is intact and new IDs are
higher. Run with fsync and with --no-fsync; FOX_CLUSTER_FAULT_SECONDS sets the load phase
(default 60)."""

import asyncio
import os
import random
import time

import pytest

from cluster_load import ACK, Load, read_log
from cluster_nodes import running_cluster
from wamp_client import connect, run

SECONDS = float(os.environ.get("FOX_CLUSTER_FAULT_SECONDS", "60"))
IN_FLIGHT_PER_ENTRY = 6  # 18 in flight over three entries
ENTRY_CONFIG = """
[limits]
history_max_messages = 1000000
"""


@pytest.fixture(params=["fsync", "no-fsync"])
def cluster(request):
    args = ["--no-fsync"] if request.param == "no-fsync" else []
    with running_cluster(node_args=args, entry_config=ENTRY_CONFIG, entry_data=os.environ.get("FOX_CLUSTER_ENTRY_DATA", "1") == "1") as c:
        yield c


@pytest.mark.timeout(SECONDS + 300)
def test_kill9_of_a_random_minority_under_load_loses_nothing_acknowledged(cluster):
    rng = random.Random(int(time.time()))
    killed = []

    async def main():
        load = Load(cluster)
        tasks = load.start(IN_FLIGHT_PER_ENTRY)
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(2.0, 4.0))
            # A random minority: at most one node of each tier at once, the sync one often
            # the Raft leader.
            victims = []
            for role in rng.sample(["entry", "ndb", "sync"], rng.randint(1, 3)):
                if role == "sync" and rng.random() < 0.5 and cluster.sync_leader():
                    victims.append(cluster.sync_leader())
                else:
                    victims.append(rng.choice([n.id for n in cluster.nodes.values() if n.role == role]))
            killed.append(victims)
            for victim in victims:
                cluster.nodes[victim].kill9()
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            for victim in victims:
                node = await asyncio.get_running_loop().run_in_executor(None, cluster.restart, victim)
                print(f"restarted node {victim} ({node.role}) in {node.restart_seconds:.2f} s, {len(load.acked)} acked")
        load.stop = True
        await asyncio.wait(tasks, timeout=30)
        acked = load.acked
        assert len(acked) > 100, f"the load ran: {len(acked)} acked, {load.failed} failed"
        # Let every entry catch up, then read the whole log back from each.
        reference = await load.check_log(cluster.entries)
        ids = [i for i, _ in reference]
        print(f"{len(acked)} acked, {load.failed} failed or unknown, {len(reference)} in the log, killed {killed}")

        # kill -9 of all nine, restart: the log is intact, new IDs are higher.
        for node in cluster.nodes.values():
            node.kill9()
        cluster.start()
        pub = await connect(cluster.entries[1])
        deadline = time.monotonic() + 20
        while True:
            try:
                new_id = (await pub.publish("f.load", "after-restart", options=ACK)).id
                break
            except Exception:
                assert time.monotonic() < deadline, "acks resume after a full restart"
                await asyncio.sleep(0.2)
        assert new_id > ids[-1]
        again = await read_log(cluster.entries[2], "f.load", len(reference) + 1)
        assert again[:len(reference)] == reference, "the log survived kill -9 of every node"

    run(main(), timeout=SECONDS + 240)
