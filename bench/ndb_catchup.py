#!/usr/bin/env python3
"""How fast a wiped ndb catches up from a peer's checkpoint, and what it costs live traffic
(issue 18), on a masterfree cluster of real processes (3 entries, 3 ndb, 3 sync on
127.0.0.1, from target/release/foxrouter or $FOXROUTER_BIN; fox-bench from
target/release/fox-bench or $FOX_BENCH_BIN).

1. The log is filled with --fill-mb MB of acknowledged 64 KiB publishes of random bytes
   (WAMP over WebSocket with MessagePack, a few in flight per entry; random, so that
   RocksDB's compression does not shrink the checkpoint), then left 15 s to compact.
2. Peak: fox-bench `acked`, 100-byte payloads, K=256 split over the three entries, for
   --seconds; half of its rate is the live load from here on.
3. Baseline: that live load at a fixed rate for --seconds (p50 / p99 of the acks); once
   before the catch-up and once after it, and the table shows both.
4. Catch-up: the same live load again, in back-to-back windows of --window seconds (each
   a fresh fox-bench per entry); one window in, ndb 4 is killed with -9 and its data
   directory removed; --down seconds later (the cluster on two ndb nodes: "one ndb down")
   it is started again (`--catch-up-after 0`, `--catch-up-rate --rate-mb`). The pull's bytes and seconds come from its log line `checkpoint pulled`;
   every window is printed, and "during" is the worst window that overlaps the time from
   the restart to the ndb being in sync (its p99 is at least the whole span's).

Usage: .venv/bin/python bench/ndb_catchup.py [--fill-mb 1024] [--seconds 10] [--rate-mb 100]
Prints a Markdown table. Every process and file is gone afterwards.
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))

from cluster_load import ACK  # noqa: E402
from cluster_nodes import admin_json, running_cluster  # noqa: E402
from wamp_client import connect  # noqa: E402
from conftest import poll_until  # noqa: E402

FOX_BENCH = os.environ.get("FOX_BENCH_BIN", str(ROOT / "target" / "release" / "fox-bench"))
BIN = Path(os.environ.get("FOXROUTER_BIN", str(ROOT / "target" / "release" / "foxrouter")))


def bench(entries, seconds, inflight, payload, rate=None, warmup=1.0):
    """fox-bench `acked` on every entry at once (K and rate split over them): combined row."""
    procs = []
    for entry in entries:
        host, port = entry.addr["ws"]
        cmd = [FOX_BENCH, "run", "--target", f"ws+msgpack://{host}:{port}/ws", "--scenario", "acked",
               "--inflight", str(max(1, inflight // len(entries))), "--payload", str(payload),
               "--duration", str(seconds), "--warmup", str(warmup), "--json"]
        if rate:
            cmd += ["--rate", str(max(1, rate // len(entries)))]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    rows = []
    for proc in procs:
        out, err = proc.communicate(timeout=seconds + warmup + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"fox-bench failed: {err[-2000:]}")
        rows.append(json.loads(out.strip().splitlines()[-1]))
    failed = [r for r in rows if "messages_per_s" not in r]
    if failed:
        raise RuntimeError(f"fox-bench row without a result: {failed}")
    return {
        "msgs_per_s": sum(r["messages_per_s"] for r in rows),
        "p50_us": sorted(r["p50_us"] for r in rows)[len(rows) // 2],
        "p99_us": max(r["p99_us"] for r in rows),
    }


async def fill(entries, total_bytes, per_entry=4):
    """Acknowledged publishes of 64 KiB of random bytes until `total_bytes` were sent."""
    sessions = [await connect(e, serializer="msgpack") for e in entries]
    sent, failed = 0, []

    async def publisher(session):
        nonlocal sent
        while sent < total_bytes:
            payload = os.urandom(65536)
            try:
                await asyncio.wait_for(session.publish("f.fill", payload, options=ACK), 30)
                sent += len(payload)
            except Exception as error:  # counted and printed: the fill goes on
                failed.append(str(error)[:200])
                await asyncio.sleep(0.1)
    await asyncio.gather(*(publisher(s) for s in sessions for _ in range(per_entry)))
    for session in sessions:
        session.leave()
    if failed:
        print(f"fill: {len(failed)} publishes failed, first: {failed[0]}", flush=True)
    return sent


def store_bytes(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fill-mb", type=int, default=1024)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--down", type=float, default=6.0, help="seconds between the kill and the restart")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate-mb", type=int, default=100, help="--catch-up-rate of the ndb (0: no bound)")
    args = parser.parse_args()
    node_args = ["--catch-up-after", "0", "--catch-up-rate", str(args.rate_mb)]
    with running_cluster(bin=BIN, node_args=node_args) as cluster:
        entries = cluster.entries
        ndb = cluster.nodes[4]
        data = cluster.dir / "data" / f"n{ndb.id}"
        began = time.monotonic()
        sent = asyncio.run(fill(entries, args.fill_mb * 1_000_000))
        print(f"filled {sent / 1e6:.0f} MB in {time.monotonic() - began:.0f} s; "
              f"ndb store {store_bytes(data) / 1e6:.0f} MB", flush=True)
        time.sleep(15)
        peak = bench(entries, args.seconds, 256, 100)
        half = int(peak["msgs_per_s"] / 2)
        print(f"peak {peak['msgs_per_s']:.0f} msgs/s; live load {half} msgs/s", flush=True)
        baseline = bench(entries, args.seconds, 256, 100, rate=half)
        print(f"baseline {baseline}", flush=True)

        # The live load in windows of --window seconds, back to back, from one window
        # before the kill until the ndb is in sync: when in the catch-up the tail grows.
        windows = []
        stop = threading.Event()

        def live():
            while not stop.is_set():
                began = time.monotonic() + 0.3  # after the warm-up
                row = bench(entries, args.window, 256, 100, rate=half, warmup=0.3)
                windows.append((began, row))
        loader = threading.Thread(target=live)
        loader.start()
        time.sleep(args.window + 0.5)
        ndb.kill9()
        killed = time.monotonic()
        shutil.rmtree(data)
        # The cluster runs on two ndb nodes a while first, so that the windows of the
        # catch-up do not include the kill itself (segments in flight then wait for both
        # other ndb nodes).
        time.sleep(args.down)
        restarted = time.monotonic()
        ndb.start().wait_listening(30)

        def pulled():
            lines = [l for l in ndb.log_path.read_text().splitlines() if "checkpoint pulled" in l]
            return lines[-1] if lines else None
        line = poll_until(pulled, 600, "the checkpoint pulled")
        bytes_ = int(re.search(r" bytes=(\d+)", line).group(1))
        seconds = float(re.search(r" seconds=([\d.]+)", line).group(1))
        pulled_at = time.monotonic() - restarted
        others = [cluster.nodes[5], cluster.nodes[6]]
        target = max(admin_json(o, "/api/v1/status")["ndb"]["applied_index"] for o in others)

        def caught_up():
            status = admin_json(ndb, "/api/v1/status")["ndb"]
            return status if status["applied_index"] >= target else None
        poll_until(caught_up, 600, "the ndb in sync")
        in_sync = time.monotonic() - restarted
        time.sleep(args.window)
        stop.set()
        loader.join()
        print(f"kill -9 at {killed - restarted:.1f} s; restart at 0 s; pull done at {pulled_at:.1f} s; "
              f"in sync at {in_sync:.1f} s")
        windows = [(began - restarted, row) for began, row in windows]
        for at, row in windows:
            print(f"  window from {at:+.1f} s: {row['msgs_per_s']:.0f} msgs/s, "
                  f"p50 {row['p50_us'] / 1000:.1f} ms, p99 {row['p99_us'] / 1000:.1f} ms")
        catching = [row for at, row in windows if at + args.window > 0 and at < in_sync]
        down = [row for at, row in windows if at > killed - restarted and at + args.window < 0]
        during = {"msgs_per_s": min(r["msgs_per_s"] for r in catching),
                  "p50_us": max(r["p50_us"] for r in catching),
                  "p99_us": max(r["p99_us"] for r in catching)}
        after = bench(entries, args.seconds, 256, 100, rate=half)
        print(f"after {after}", flush=True)
        print()
        one_down = max((r["p99_us"] for r in down), default=0) / 1000
        print("| checkpoint | pulled in | MB/s | restart to in sync | live load "
              "| p50 / p99 before | p99 one ndb down | p50 / p99 during | p50 / p99 after |")
        print("|---|---|---|---|---|---|---|---|---|")
        print(f"| {bytes_ / 1e6:.0f} MB | {seconds:.1f} s | {bytes_ / seconds / 1e6:.0f} | {in_sync:.1f} s | "
              f"{half} msgs/s (peak {peak['msgs_per_s']:.0f}) | "
              f"{baseline['p50_us'] / 1000:.1f} / {baseline['p99_us'] / 1000:.1f} ms | "
              f"{one_down:.1f} ms | "
              f"{during['p50_us'] / 1000:.1f} / {during['p99_us'] / 1000:.1f} ms | "
              f"{after['p50_us'] / 1000:.1f} / {after['p99_us'] / 1000:.1f} ms |")
        worse = max(baseline["p99_us"], after["p99_us"])
        print(f"p99 during (the worst window that overlaps the catch-up) / the worse of before and after: "
              f"{during['p99_us'] / max(1, worse):.2f}; lowest rate of those windows "
              f"{during['msgs_per_s']:.0f} msgs/s; --catch-up-rate {args.rate_mb} MB/s")


if __name__ == "__main__":
    main()
