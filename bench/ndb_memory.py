#!/usr/bin/env python3
"""What an ndb holds in memory as the log grows (issue 18): a masterfree cluster of real
processes (3 entries, 3 ndb, 3 sync on 127.0.0.1, from target/release/foxrouter or
$FOXROUTER_BIN, or --bin) is filled with --fill-mb MB of acknowledged 64 KiB publishes
(WAMP over WebSocket, MessagePack, 4 in flight per entry), then each ndb's resident
memory (VmRSS) is read; the three ndb processes are killed with -9 and started again, and
it is read once more (recovery reads back what memory holds). Extra arguments after --
go to every node (`-- --log-cache-mb 64`).

Usage: .venv/bin/python bench/ndb_memory.py [--fill-mb 1024] [--bin PATH] [-- NODE ARGS]
Prints a Markdown table. Every process and file is gone afterwards.
"""

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "interop"))

from ndb_catchup import BIN, fill  # noqa: E402
from cluster_nodes import running_cluster  # noqa: E402


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fill-mb", type=int, default=1024)
    parser.add_argument("--bin", type=Path, default=BIN)
    parser.add_argument("node_args", nargs="*")
    args = parser.parse_args()
    with running_cluster(bin=args.bin, node_args=args.node_args) as cluster:
        began = time.monotonic()
        sent = asyncio.run(fill(cluster.entries, args.fill_mb * 1_000_000))
        seconds = time.monotonic() - began
        time.sleep(3)
        ndbs = [node for node in cluster.nodes.values() if node.role == "ndb"]
        filled = [rss_mb(node.proc.pid) for node in ndbs]
        for node in ndbs:
            node.kill9()
        for node in ndbs:
            node.start().wait_listening(120)
        time.sleep(5)
        restarted = [rss_mb(node.proc.pid) for node in ndbs]
        expired = sum("lease expired" in line for line in cluster.logs().splitlines())
    print(f"| binary | log filled | ndb RSS after the fill (MB) | after kill -9 and restart (MB) | leases expired |")
    print("|---|---|---|---|---|")
    print(f"| `{args.bin.name}` {' '.join(args.node_args)} | {sent / 1e6:.0f} MB in {seconds:.0f} s | "
          f"{', '.join(map(str, filled))} | {', '.join(map(str, restarted))} | {expired} |")


if __name__ == "__main__":
    main()
