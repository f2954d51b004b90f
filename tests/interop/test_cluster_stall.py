"""A stall of a whole tier is not a death: while publishers on all three entries keep
acknowledged publishes in flight, every ndb (a disk that stops answering) or every sync node
(a pause of the whole voting tier) is stopped with SIGSTOP for several lease times, then
resumed. Nothing is decided meanwhile, so no entry's lease may expire over it: every entry
keeps its life (no lease lost, none fenced), no publish is refused, and every acknowledged
message is in the log once. (An entry whose beats stop while others' go on still loses its
lease: the kill -9 tests show it.)"""

import asyncio
import os
import signal
import time

import pytest

from cluster_load import Load, read_log
from cluster_nodes import running_cluster
from wamp_client import run

STALL_SECONDS = 4.0  # over twice the lease (1.5 s of log time)
IN_FLIGHT_PER_ENTRY = 3


def log_lines(cluster, text):
    return [line for n in cluster.entries for line in n.logs().splitlines() if text in line]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("tier", ["ndb", "sync"])
def test_a_stalled_tier_expires_no_lease_and_refuses_no_publish(tier):
    with running_cluster() as cluster:
        async def main():
            load = Load(cluster)
            tasks = load.start(IN_FLIGHT_PER_ENTRY)
            began = time.monotonic()
            while len(load.acked) < 150 and time.monotonic() - began < 60:
                await asyncio.sleep(0.1)
            assert len(load.acked) >= 150, "the load runs before the stall"
            stalled = [n for n in cluster.nodes.values() if n.role == tier]
            before = len(load.acked)
            for node in stalled:
                os.kill(node.proc.pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(STALL_SECONDS)
                during = len(load.acked) - before
            finally:
                for node in stalled:
                    os.kill(node.proc.pid, signal.SIGCONT)
            resumed = len(load.acked)
            await asyncio.sleep(4.0)
            load.stop = True
            await asyncio.gather(*tasks, return_exceptions=True)
            print(f"{before} acked before the stall, {during} during it, "
                  f"{len(load.acked) - resumed} in 4 s after it; {load.failed} failed")
            assert during <= 3 * IN_FLIGHT_PER_ENTRY, "nothing is decided while a whole tier is stopped"
            assert len(load.acked) > resumed + 100, "acknowledgements go on after the stall"
            assert log_lines(cluster, "lease expired") == [], "no lease expires over a stall"
            assert log_lines(cluster, "fenced") == [], "no entry was fenced into a new life"
            assert load.failed == 0, "no publish is refused or lost over the stall"
            got = await read_log(cluster.entries[0], load.topic, len(load.acked))
            ids = {payload: id for id, payload in got}
            assert len(ids) == len(got), "no message is in the log twice"
            missing = [p for p in load.acked if ids.get(p) != load.acked[p]]
            assert missing == [], f"{len(missing)} acknowledged messages are missing"

        run(main())
