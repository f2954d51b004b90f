"""An ndb that lost its disk pulls a peer's checkpoint instead of fetching the log segment by
segment (docs/cluster.md, *Catching up from a checkpoint*), with real processes under
acknowledged load: it is killed with -9 in the middle of the pull and resumes from what it
had staged, publishing never stops (the catching-up ndb counts in no quorum), and at the
end, with the two other ndb nodes stopped, the entries read every acknowledged message
back from it alone."""

import asyncio
import base64
import os
import re
import shutil
import time

import pytest

from cluster_load import ACK, Load, in_thread, read_log
from cluster_nodes import admin_json, running_cluster
from conftest import poll_until
from wamp_client import connect, wait_until

ENTRY_CONFIG = """
[limits]
history_max_messages = 1000000
"""
# About 5 MB of incompressible payloads, pulled at 1 MB/s: a pull of several seconds,
# long enough to kill the puller in the middle.
BULK_MESSAGES = 400
BULK_PAYLOAD_BYTES = 12 * 1024
NODE_ARGS = ["--catch-up-after", "0", "--catch-up-rate", "1"]
PAUSE_MAX_SECONDS = 5.0


def ndb_status(node):
    return admin_json(node, "/api/v1/status")["ndb"]


async def bulk_publish(entry, count):
    """`count` large acknowledged publishes on f.bulk through `entry`, 8 in flight: {payload:
    ID}. A publish the cluster refuses is published again: bulk load can get the entry's
    lease expired in the log (its beats ordered late, more so in a debug build) and its
    segments aborted, which is not what this test is about (see the closing note of
    session 21)."""
    sessions = [await connect(entry)]
    acked, refused = {}, []
    pending = [f"bulk-{i}-" + base64.b64encode(os.urandom(BULK_PAYLOAD_BYTES * 3 // 4)).decode()
               for i in range(count)]

    async def publisher(session):
        while pending:
            payload = pending.pop()
            try:
                publication = await asyncio.wait_for(session.publish("f.bulk", payload, options=ACK), 30)
                acked[payload] = publication.id
            except Exception as error:
                refused.append(str(error)[:120])
                pending.append(payload)
                await asyncio.sleep(0.2)
                if len(refused) > count:
                    raise
    try:
        await asyncio.gather(*(publisher(s) for s in sessions for _ in range(8)))
    finally:
        for session in sessions:
            session.leave()
    if refused:
        print(f"bulk: {len(refused)} publishes refused and published again; first: {refused[0]}")
    return acked


def pull_lines(node):
    return [l for l in node.log_path.read_text().splitlines() if "pulling a checkpoint" in l]


@pytest.mark.timeout(300)
def test_a_wiped_ndb_pulls_a_checkpoint_resumes_after_kill9_and_then_holds_the_whole_log():
    with running_cluster(entry_config=ENTRY_CONFIG, node_args=NODE_ARGS) as cluster:
        async def main():
            bulk = await bulk_publish(cluster.entries[0], BULK_MESSAGES)
            load = Load(cluster)
            tasks = load.start(2)
            try:
                await check(bulk, load, tasks)
            finally:
                # A failed check stops the publishers too (each within its publish timeout).
                load.stop = True
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)

        async def check(bulk, load, tasks):
            await wait_until(lambda: len(load.acked) >= 100, timeout=60, what="acknowledgements")
            began = time.monotonic()
            node, others = cluster.nodes[4], [cluster.nodes[5], cluster.nodes[6]]
            node.kill9()
            data = cluster.dir / "data" / f"n{node.id}"
            shutil.rmtree(data)
            await in_thread(lambda: node.start().wait_listening(30))

            def half_pulled():
                catch_up = ndb_status(node)["catch_up"]
                total = catch_up["bytes_total"]
                return catch_up if catch_up["active"] and total and catch_up["bytes_done"] * 3 >= total else None
            first = await in_thread(poll_until, half_pulled, 60, "a third of the checkpoint pulled")
            # The peer's checkpoint holds most of the bulk (a segment it did not store yet
            # is in its log only later, and comes with the tail after the swap).
            assert first["bytes_total"] >= BULK_MESSAGES * BULK_PAYLOAD_BYTES * 0.5, first
            acked_meanwhile = len(load.acked)
            node.kill9()
            staged = sum(f.stat().st_size for f in (data / ".catchup").iterdir())
            assert staged > 0, "the pull staged files before it was killed"
            await in_thread(lambda: node.start().wait_listening(30))
            target = max(ndb_status(o)["applied_index"] for o in others)

            def caught_up():
                status = ndb_status(node)
                done = status["catch_up"]["checkpoints_pulled"] == 1 and status["applied_index"] >= target
                return status if done else None
            status = await in_thread(poll_until, caught_up, 120, f"ndb {node.id} caught up from a checkpoint")
            assert status["catch_up"]["bytes_done"] == status["catch_up"]["bytes_total"]
            assert not (data / ".catchup").exists(), "the staging directory is gone after the swap"
            # The second pull started from what the first one staged.
            resumed = int(re.search(r"staged_bytes=(\d+)", pull_lines(node)[-1]).group(1))
            assert resumed > 0, pull_lines(node)
            assert len(load.acked) > acked_meanwhile, "publishing went on during the pull"
            await wait_until(lambda: len(load.acked) >= acked_meanwhile + 200, timeout=60,
                             what="acknowledgements after the catch-up")
            pause = load.longest_pause(began)
            load.stop = True
            await asyncio.gather(*tasks)
            assert pause < PAUSE_MAX_SECONDS, f"acknowledgements paused {pause:.1f} s"

            # Every ndb ends with the same log.
            def same():
                views = [ndb_status(n) for n in [node] + others]
                keys = {(v["applied_index"], v["log_records"]) for v in views}
                return views if len(keys) == 1 else None
            await in_thread(poll_until, same, 30, "every ndb at the same log")
            # The caught-up ndb alone serves the whole log: with the two others stopped, an
            # entry whose data directory is wiped replays it from that ndb only.
            await load.check_log(cluster.entries)
            for other in others:
                other.terminate()
            entry = cluster.nodes[2]
            entry.kill9()
            shutil.rmtree(cluster.dir / "data" / f"n{entry.id}", ignore_errors=True)
            await in_thread(lambda: entry.start().wait_listening(30))
            got = await read_log(entry, "f.bulk", len(bulk), timeout=60)
            assert dict((p, i) for i, p in got) == bulk, "every bulk message, with its ID"
            got = await read_log(entry, load.topic, len(load.acked), timeout=60)
            assert dict((p, i) for i, p in got) == load.acked, "every small message, with its ID"
            print(f"pulled {status['catch_up']['bytes_total']} bytes; resumed from {resumed}; "
                  f"{len(load.acked)} small messages acknowledged, longest pause {pause:.2f} s")

        asyncio.run(asyncio.wait_for(main(), 280))
