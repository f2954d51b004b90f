#!/usr/bin/env python3
"""How long a cluster entry takes to catch up after kill -9, from its snapshot and by
replaying the whole log, on a masterfree cluster of real processes (3 entries, 3 ndb,
3 sync, started here from `target/debug/foxrouter` or $FOXROUTER_BIN, all on 127.0.0.1).

First the log is filled with --messages MQTT QoS 1 publishes (100 bytes, retained on
--keys keys, so the entry has a retained table and a history to rebuild). Then, --runs
times, interleaved: entry 3 is killed with -9 and started again, once with its snapshot
(`[router] snapshot_records`, default 10,000, and every 30 s) and once with the snapshot
file removed (a replay from the log's start); the time from the start of the process to
the moment its admin API reports `last_applied >= log_end` is measured.

Usage: .venv/bin/python bench/entry_restart.py [--messages 50000] [--runs 3]
Prints one line per restart, then a Markdown table (median, min, max per mode).
"""

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))

import paho.mqtt.client as mqtt  # noqa: E402

from cluster_nodes import running_cluster  # noqa: E402

CATCH_UP_TIMEOUT_S = 300


def cluster_view(entry):
    with urllib.request.urlopen(f"{entry.admin_url}/api/v1/cluster", timeout=5) as r:
        return json.loads(r.read())


def fill(entry, messages, keys, chunk=10_000):
    """Publishes `messages` QoS 1 messages through `entry`, 100 in flight, over one
    connection per `chunk`; waits for every PUBACK and fails on a refusal or a dropped
    connection."""
    host, port = entry.mqtt
    payload = b"x" * 100
    started = time.monotonic()
    for first in range(0, messages, chunk):
        count = min(chunk, messages - first)
        acked, refused, dropped = 0, [], []
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fill{first}",
                             protocol=mqtt.MQTTv5)
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)

        def on_publish(_client, _userdata, _mid, reason, _properties):
            nonlocal acked
            acked += 1
            if reason.is_failure:
                refused.append(str(reason))

        client.on_publish = on_publish
        client.on_disconnect = lambda _c, _u, _f, reason, _p: dropped.append(str(reason))
        client.connect(host, port)
        client.loop_start()
        for n in range(first, first + count):
            client.publish(f"bench/restart/{n % keys}", payload, qos=1, retain=True)
        deadline = time.monotonic() + 120
        while acked < count and not dropped and time.monotonic() < deadline:
            time.sleep(0.02)
        client.loop_stop()
        client.disconnect()
        if acked < count or refused:
            raise RuntimeError(f"messages {first}..{first + count}: {acked} acknowledged, "
                               f"refused {refused[:3]}, disconnected {dropped}")
    return time.monotonic() - started


def caught_up(entry, started):
    deadline = started + CATCH_UP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            view = cluster_view(entry)
            if view["log_end"] > 0 and view["last_applied"] >= view["log_end"]:
                return time.monotonic() - started, view["last_applied"]
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError("the entry did not catch up")


def restart(cluster, entry, snapshot):
    entry.kill9()
    path = cluster.dir / "data" / f"n{entry.id}" / "snapshot.msgpack"
    if not snapshot and path.exists():
        kept = path.read_bytes()
        path.unlink()
    else:
        kept = None
    line = "state restored from the snapshot"
    before = entry.log_path.read_text().count(line)
    started = time.monotonic()
    entry.start().wait_listening(60)
    took, applied = caught_up(entry, started)
    if kept is not None and not path.exists():
        path.write_bytes(kept)  # the next run with a snapshot starts from the same one
    restored = entry.log_path.read_text().count(line) > before
    return took, applied, restored


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with running_cluster(entry_data=True) as cluster:
        one, _, three = cluster.entries
        took = fill(one, args.messages, args.keys)
        print(f"filled: {args.messages} QoS 1 publishes in {took:.1f} s ({args.messages / took:.0f}/s)")
        # The entry writes a snapshot every 10,000 records: wait until it caught up and
        # wrote one that covers most of the log.
        caught_up(three, time.monotonic())
        time.sleep(2)
        results = {"snapshot": [], "replay": []}
        for run in range(args.runs):
            for mode in ("snapshot", "replay"):
                took, applied, restored = restart(cluster, three, mode == "snapshot")
                results[mode].append(took)
                print(f"run {run + 1} {mode:8}: caught up in {took:.2f} s (through {applied}, from snapshot: {restored})")
        print()
        print(f"| entry 3 catches up after kill -9 ({args.messages} records in the log) | median | min | max |")
        print("| --- | --- | --- | --- |")
        for mode, label in (("snapshot", "from its snapshot"), ("replay", "replaying the log from its start")):
            values = results[mode]
            print(f"| {label} | {statistics.median(values):.2f} s | {min(values):.2f} s | {max(values):.2f} s |")


if __name__ == "__main__":
    main()
