#!/usr/bin/env bash
# Acknowledged publishing against a real 3/3/3 masterfree cluster on loopback.
#
#   bench/cluster.sh [--duration SECONDS] [--inflight "1 16 256"] [--no-fsync] [--no-build]
#   FOXROUTER_BIN / FOX_BENCH_BIN override the binaries (default target/release/...).
#
# Writes a cluster file with `foxrouter cluster init` (free loopback ports), starts the nine
# `foxrouter node` processes (3 entries, 3 ndb, 3 sync; fsync unless --no-fsync), then for
# each total in-flight K runs fox-bench's `acked` scenario (WAMP publish with
# acknowledge=true over ws+msgpack, 100-byte payloads) against the entries at once: K=1 on
# entry 1 alone, otherwise K split over the three entries. One table: messages/s (sum of
# the three), p50 (median of the three p50s) and p99 (the worst of the three p99s), and the
# CPU seconds each role used during the run. Stops every process and removes its files.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=5
INFLIGHT="1 16 256"
NODE_ARGS=""
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift ;;
    --inflight) INFLIGHT=$2; shift ;;
    --no-fsync) NODE_ARGS="--no-fsync" ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
FOXROUTER_BIN="${FOXROUTER_BIN:-$TARGET_DIR/release/foxrouter}"
FOX_BENCH_BIN="${FOX_BENCH_BIN:-$TARGET_DIR/release/fox-bench}"
if [ "$BUILD" = 1 ]; then
  bash "$ROOT/scripts/setup.sh" --build-only
  (cd "$ROOT" && cargo build --release -p fox-router -p fox-demos --bin foxrouter --bin fox-bench)
fi
WORK=$(mktemp -d /tmp/fox-cluster-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
# Ports below the ephemeral range, so the nodes' own outgoing connections cannot take them.
BASE=$(python3 - <<'PY'
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(200):
    base = random.randrange(10000, low - 25)
    socks = []
    try:
        for p in range(base, base + 21):
            t = socket.socket(); socks.append(t); t.bind(("127.0.0.1", p))
        print(base); break
    except OSError:
        pass
    finally:
        for t in socks: t.close()
PY
)
"$FOXROUTER_BIN" cluster init "$WORK" --base-port "$BASE" >/dev/null
for id in 1 2 3 4 5 6 7 8 9; do
  "$FOXROUTER_BIN" node --cluster "$WORK/cluster.toml" --id "$id" $NODE_ARGS --log warn \
    >"$WORK/n$id.out" 2>"$WORK/n$id.err" &
  PIDS+=($!)
done
deadline=$((SECONDS + 30))
for id in 1 2 3 4 5 6 7 8 9; do
  until grep -q '^LISTEN' "$WORK/n$id.out" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "node $id did not start: $(tail -5 "$WORK/n$id.err")" >&2; exit 1; }
    sleep 0.1
  done
done
ws() { grep '^LISTEN ws ' "$WORK/n$1.out" | awk '{print $3}'; }
cpu_ticks() { # utime + stime of a process, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}
role_cpu() { # CPU seconds per role since the snapshot in $1
  python3 - "$1" "$(getconf CLK_TCK)" "${PIDS[@]}" <<'PY'
import sys
before = [int(x) for x in open(sys.argv[1]).read().split()]
tck = int(sys.argv[2]); pids = sys.argv[3:]
now = []
for pid in pids:
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        now.append(int(f[11]) + int(f[12]))
    except OSError:
        now.append(0)
d = [(n - b) / tck for n, b in zip(now, before)]
print(f"entries {sum(d[0:3]):.1f}  ndb {sum(d[3:6]):.1f}  sync {sum(d[6:9]):.1f}")
PY
}
mode=fsync; [ -n "$NODE_ARGS" ] && mode=no-fsync
echo "== acked publishing, 3/3/3 cluster ($mode), ${DURATION}s per row, 100-byte payloads"
printf "%-10s %12s %10s %10s   %s\n" inflight msgs/s p50_us p99_us "CPU s (sum per role)"
for k in $INFLIGHT; do
  snapshot="$WORK/cpu-$k"
  for pid in "${PIDS[@]}"; do cpu_ticks "$pid"; done | tr '\n' ' ' >"$snapshot"
  if [ "$k" = 1 ]; then shares=(1); else shares=($((k - 2 * (k / 3))) $((k / 3)) $((k / 3))); fi
  runs=()
  for i in "${!shares[@]}"; do
    out="$WORK/bench-$k-$i.json"
    "$FOX_BENCH_BIN" run --target "ws+msgpack://$(ws $((i + 1)))/ws" --scenario acked \
      --connections 1 --inflight "${shares[$i]}" --duration "$DURATION" --warmup 1 \
      --label "entry$((i + 1))" --json >"$out" 2>"$WORK/bench-$k-$i.err" &
    runs+=($!)
  done
  for r in "${runs[@]}"; do wait "$r" || true; done
  python3 - "$k" "$(role_cpu "$snapshot")" "$WORK"/bench-"$k"-*.json <<'PY'
import json, statistics, sys
k, cpu, files = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = []
for f in files:
    try:
        rows.append(json.loads(open(f).read().strip().splitlines()[-1]))
    except Exception as e:
        print(f"{k:<10} ERROR {f}: {e}"); sys.exit(0)
errors = [r.get("error") for r in rows if r.get("error")]
if errors:
    print(f"{k:<10} ERROR {errors[0]}"); sys.exit(0)
rate = sum(r["messages_per_s"] for r in rows)
p50 = statistics.median(r["p50_us"] for r in rows)
p99 = max(r["p99_us"] for r in rows)
print(f"{k:<10} {rate:>12.0f} {p50:>10.0f} {p99:>10.0f}   {cpu}")
PY
done
