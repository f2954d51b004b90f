"""Lost disks, replaced under load, with real processes: while publishers on all three
entries keep acknowledged publishes in flight, each ndb in turn is killed with -9 and comes
back with an empty data directory (a new machine), and is caught up from its peers before
the next one goes; then a sync node is killed and restarted, and an entry comes back with
its data directory wiped too (it replays the log). Acknowledgements never pause long,
every wiped ndb ends with the same log as the others, and no acknowledged message is lost:
after all three ndb disks were replaced, the log read back from every entry holds every
acknowledged message with its ID (docs/cluster.md, *Replacing a node*)."""

import asyncio
import shutil
import time

import pytest

from cluster_load import Load, in_thread
from cluster_nodes import admin_json, running_cluster
from conftest import poll_until
from wamp_client import run, wait_until

ENTRY_CONFIG = """
[limits]
history_max_messages = 1000000
"""
IN_FLIGHT_PER_ENTRY = 4
PAUSE_MAX_SECONDS = 5.0


def ndb_status(node):
    return admin_json(node, "/api/v1/status")["ndb"]


def data_dir(cluster, node_id):
    return cluster.dir / "data" / f"n{node_id}"


@pytest.mark.timeout(600)
def test_each_ndb_disk_replaced_in_turn_under_load_loses_nothing_acknowledged():
    with running_cluster(entry_config=ENTRY_CONFIG) as cluster:
        async def main():
            load = Load(cluster)
            tasks = load.start(IN_FLIGHT_PER_ENTRY)
            await wait_until(lambda: len(load.acked) >= 200, timeout=60, what="acknowledgements")
            began, count = time.monotonic(), len(load.acked)
            await asyncio.sleep(5)
            print(f"steady: {(len(load.acked) - count) / (time.monotonic() - began):.0f} acks/s")
            faults_began = time.monotonic()
            ndbs = [cluster.nodes[i] for i in (4, 5, 6)]
            for node in ndbs:
                others = [n for n in ndbs if n is not node]
                node.kill9()
                shutil.rmtree(data_dir(cluster, node.id))
                wiped_at = time.monotonic()
                await in_thread(lambda: node.start().wait_listening(30))
                # In sync again: it applied every resolution its peers had applied when
                # it came back, and its log holds as many records as theirs did then.
                target = max(ndb_status(o)["applied_index"] for o in others)
                records = max(ndb_status(o)["log_records"] for o in others)

                def caught_up():
                    status = ndb_status(node)
                    return status if status["applied_index"] >= target and status["log_records"] >= records else None
                await in_thread(poll_until, caught_up, 120, f"ndb {node.id} caught up after its wipe")
                seconds = time.monotonic() - wiped_at
                print(f"ndb {node.id} wiped and caught up in {seconds:.1f} s: {records} records "
                      f"({records / seconds:.0f} records/s), {len(load.acked)} acked")
                await asyncio.sleep(1)

            sync = cluster.sync_leader() or 8
            cluster.nodes[sync].kill9()
            await in_thread(lambda: cluster.nodes[sync].start().wait_listening(30))
            entry = cluster.nodes[2]
            mine = load.acks_by_entry[1]
            entry.kill9()
            shutil.rmtree(data_dir(cluster, entry.id), ignore_errors=True)
            await in_thread(lambda: entry.start().wait_listening(30))
            await wait_until(lambda: load.acks_by_entry[1] >= mine + 100, timeout=60,
                             what="acknowledgements through the wiped entry")
            pause = load.longest_pause(faults_began)
            load.stop = True
            await asyncio.wait(tasks, timeout=30)
            print(f"longest pause {pause:.2f} s")
            assert pause < PAUSE_MAX_SECONDS, f"no acknowledgement for {pause:.2f} s"

            # Every ndb holds the same log (quiet now), and every entry reads it back whole.
            def same_logs():
                states = [ndb_status(n) for n in ndbs]
                ends = {(s["applied_index"], s["log_records"]) for s in states}
                return states if len(ends) == 1 else None
            states = await in_thread(poll_until, same_logs, 30, "the same log on every ndb")
            reference = await load.check_log(cluster.entries)
            print(f"{len(load.acked)} acked, {load.failed} failed or unknown, {len(reference)} in the log; "
                  f"ndb {states[0]}")

        run(main(), timeout=560)
