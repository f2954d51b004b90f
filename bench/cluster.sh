#!/usr/bin/env bash
# Acknowledged publishing, in one run: our 3/3/3 masterfree cluster against a 3-node NATS
# JetStream cluster with a 3-replica stream, both on loopback.
#
#   bench/cluster.sh [--duration SECONDS] [--inflight "1 16 256"] [--runs N]
#                    [--sides foxrouter,jetstream] [--no-fsync] [--jetstream-sync-always]
#                    [--no-install] [--no-build] [--workers N] [--delivery]
#   FOXROUTER_BIN / FOX_BENCH_BIN / NATS_SERVER_BIN override the binaries (default:
#   target/release/..., and nats-server from PATH or /usr/sbin).
#
# The scenario is fox-bench's `acked` on both sides: K publishes in flight, 100-byte
# payloads, each publish waits for its acknowledgement (foxrouter: WAMP publish with
# acknowledge=true over ws+msgpack; JetStream: async-nats publish and wait for the stream's
# PubAck). K=1 runs one fox-bench on node 1; any other K is split over three fox-bench
# processes, one per entry (foxrouter) or server (JetStream), started at once. A row's
# msgs/s is their sum, p50 the median of their p50s, p99 the worst of their p99s (fox-bench
# combine); cpu_s is the CPU seconds of all the side's processes during the row (9 nodes,
# or 3 nats-servers; warm-up included), the note splits foxrouter's per role and names the
# JetStream stream's leader (the server places it; node 1 may or may not lead).
# Fresh and interleaved, as bench/compare.sh: for every K and run, a newly started
# foxrouter cluster, then a newly started JetStream cluster (new store directories), so no
# row inherits another's logs or a noisy minute of the machine.
# Output: one table (key acked-K<k>, one row per side), then per K the line
#   RATIO acked-K<k> jetstream <foxrouter msgs/s / jetstream msgs/s>
# Exit 1 if any row is an ERROR row: `--duration 1 --inflight 16` is the smoke test.
#
# --delivery: on the foxrouter side, each fox-bench also subscribes one more session to
# its topic on the same entry and records every event's latency from its publish (the
# log's delivery beside the acknowledgement): the note says `delivery p50 .. p99 .. (ack
# p99 ..)`. The subscriber adds the entries' delivery work, so these rows are not the
# throughput comparison; JetStream runs without a consumer either way.
#
# Elections: the note of every foxrouter row says how many sync elections happened while
# the load ran (the highest Raft term among the sync nodes, read from their admin
# /metrics before and after the row) and whether the leader changed: with nine processes
# on two cores a flapping election timeout shows there.
#
# --workers N starts every node with N runtime worker threads (`foxrouter node --workers`;
# default one per core): nine nodes and the load share this machine's cores.
#
# fsync. foxrouter fsyncs before it acknowledges (its default; --no-fsync turns it off).
# JetStream acknowledges once a quorum of the stream's replicas has appended the message,
# to the page cache: nats-server 2.9 (Debian bookworm's 2.9.10) fsyncs its file store in
# the background every 60 s, fixed (no `sync_interval` option, no way to fsync before the
# ack). From 2.10 on `jetstream { sync_interval }` sets that interval (default 2 min) and
# `sync_interval: always` fsyncs every write before the ack: --jetstream-sync-always runs
# that, and is refused by a server older than 2.10. The header states which ran.
#
# nats-server is installed from Debian (package nats-server, as scripts/setup.sh installs
# mosquitto) when missing; JetStream clustering needs 2.2 or later, which bookworm's has.
# Every process is stopped and every file removed on exit (trap); each wait is bounded
# (nodes 30 s to start, the stream 30 s to get its leader, fox-bench duration + 60 s).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=5
WARMUP=1
INFLIGHT="1 16 256"
RUNS=1
SIDES=foxrouter,jetstream
NODE_ARGS=""
WORKERS=""
JS_SYNC_ALWAYS=0
DELIVERY=""
INSTALL=1
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift ;;
    --inflight) INFLIGHT=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --sides) SIDES=$2; shift ;;
    --no-fsync) NODE_ARGS="--no-fsync" ;;
    --workers) WORKERS=$2; shift ;;
    --delivery) DELIVERY="--delivery" ;;
    --jetstream-sync-always) JS_SYNC_ALWAYS=1 ;;
    --no-install) INSTALL=0 ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n "2,/^set -euo/p" "$0" | sed '$ d'; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
wanted() { [[ ",$SIDES,"  == *",$1,"* ]]; }
log() { echo "[cluster] $*" >&2; }
for side in ${SIDES//,/ }; do
  case "$side" in foxrouter|jetstream) ;; *) echo "unknown side $side" >&2; exit 2 ;; esac
done
[[ "$RUNS" =~ ^[1-9][0-9]?$ ]] || { echo "--runs: 1 to 99" >&2; exit 2; }

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
FOXROUTER_BIN="${FOXROUTER_BIN:-$TARGET_DIR/release/foxrouter}"
FOX_BENCH_BIN="${FOX_BENCH_BIN:-$TARGET_DIR/release/fox-bench}"

# ---------------------------------------------------------------- nats-server
find_nats() { command -v nats-server || ls /usr/sbin/nats-server 2>/dev/null || true; }
NATS_SERVER_BIN="${NATS_SERVER_BIN:-$(find_nats)}"
JS_VERSION=""
JS_FSYNC=""
if wanted jetstream; then
  if [ -z "$NATS_SERVER_BIN" ] && [ "$INSTALL" = 1 ]; then
    log "installing nats-server (Debian package)"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nats-server >/dev/null \
      || log "nats-server install failed"
    # The package starts a service on :4222 where systemd runs; the bench uses its own.
    (command -v systemctl >/dev/null && $SUDO systemctl stop nats-server) >/dev/null 2>&1 || true
    NATS_SERVER_BIN=$(find_nats)
  fi
  [ -n "$NATS_SERVER_BIN" ] || { echo "nats-server not found (NATS_SERVER_BIN, or drop --no-install)" >&2; exit 1; }
  JS_VERSION=$("$NATS_SERVER_BIN" --version 2>&1 | grep -oE 'v[0-9]+\.[0-9]+\.[0-9]+' | head -1 || true)
  [[ "$JS_VERSION" =~ ^v([0-9]+)\.([0-9]+)\. ]] || { echo "nats-server: unknown version '$JS_VERSION'" >&2; exit 1; }
  js_minor=$((BASH_REMATCH[1] * 1000 + BASH_REMATCH[2]))
  if [ "$js_minor" -lt 2002 ]; then
    echo "nats-server $JS_VERSION has no JetStream clustering (2.2+); set NATS_SERVER_BIN" >&2; exit 1
  fi
  if [ "$JS_SYNC_ALWAYS" = 1 ]; then
    if [ "$js_minor" -lt 2010 ]; then
      echo "--jetstream-sync-always: nats-server $JS_VERSION has no sync_interval: always (2.10+)" >&2; exit 2
    fi
    JS_FSYNC="sync_interval: always (fsync before every ack)"
  elif [ "$js_minor" -lt 2010 ]; then
    JS_FSYNC="default of 2.9: background fsync every 60 s, none before the ack"
  else
    JS_FSYNC="default sync_interval: background fsync every 2 min, none before the ack"
  fi
fi

if [ "$BUILD" = 1 ]; then
  if wanted foxrouter; then
    bash "$ROOT/scripts/setup.sh" --build-only
    (cd "$ROOT" && cargo build --release --workspace --bins)
  else
    # The same selection as scripts/run.sh and compare.sh: one set of release artifacts.
    (cd "$ROOT" && cargo build --release --workspace --bins)
  fi
fi

WORK=$(mktemp -d /tmp/fox-cluster-bench.XXXXXX)
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
PIDS=()      # every process started, for the trap
SIDE_PIDS=() # the processes of the side under test
cleanup() {
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A base port with N free ports above it, below the ephemeral range (so no process's own
# outgoing connection can take a port a node restarts on).
pick_base() {
  python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(200):
    base = random.randrange(10000, low - n - 2)
    socks = []
    try:
        for p in range(base, base + n):
            t = socket.socket(); socks.append(t); t.bind(("127.0.0.1", p))
        print(base); break
    except OSError:
        pass
    finally:
        for t in socks: t.close()
PY
}

wait_port() { # port deadline(SECONDS)
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    [ $SECONDS -lt "$2" ] || return 1
    sleep 0.1
  done
}

# utime + stime of each of SIDE_PIDS, in clock ticks, one line.
cpu_snapshot() {
  for pid in "${SIDE_PIDS[@]}"; do
    awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0
  done | tr '\n' ' '
}

# CPU seconds of each of SIDE_PIDS since the snapshot in $1, one line.
cpu_since() {
  python3 - "$1" "$(getconf CLK_TCK)" "${SIDE_PIDS[@]}" <<'PY'
import sys
before = [int(x) for x in sys.argv[1].split()]
tck = int(sys.argv[2])
now = []
for pid in sys.argv[3:]:
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        now.append(int(f[11]) + int(f[12]))
    except OSError:
        now.append(0)
print(" ".join(f"{(n - b) / tck:.2f}" for n, b in zip(now, before)))
PY
}
sum_fields() { awk -v from="$2" -v to="$3" '{s = 0; for (i = from; i <= to; i++) s += $i; printf "%.1f", s}' <<<"$1"; }

# Stops the side's processes: SIGTERM, up to 10 s, then SIGKILL.
stop_side() {
  for pid in "${SIDE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  local deadline=$((SECONDS + 10)) pid
  for pid in "${SIDE_PIDS[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  SIDE_PIDS=()
}

# run_load DIR K EXTRA TARGET...: fox-bench acked on each target with K split over them
# (K=1: the first target alone), EXTRA (may be empty) added to each; writes
# DIR/bench-<i>.json.
run_load() {
  local dir=$1 k=$2 extra=$3; shift 3
  local targets=("$@") shares runs=() i
  if [ "$k" = 1 ]; then shares=(1); else shares=($((k - 2 * (k / 3))) $((k / 3)) $((k / 3))); fi
  for i in "${!shares[@]}"; do
    timeout $((${DURATION%.*} + 60)) "$FOX_BENCH_BIN" run --target "${targets[$i]}" --scenario acked \
      --connections 1 --inflight "${shares[$i]}" --duration "$DURATION" --warmup "$WARMUP" \
      --label "node$((i + 1))" $extra --json >"$dir/bench-$i.json" 2>"$dir/bench-$i.err" &
    runs+=($!)
  done
  for i in "${runs[@]}"; do wait "$i" || true; done
}

# record LABEL K DIR CPU_SECONDS NOTE: the combined row into RESULTS.
record() {
  local line
  line=$("$FOX_BENCH_BIN" combine --label "$1" --key "acked-K$2" --cpu-seconds "$4" --note "$5" "$3"/bench-*.json)
  echo "$line" >>"$RESULTS"
  log "$line"
}

error_row() { # label k message
  local message
  message=$(printf '%s' "$3" | tr -dc '[:print:]' | tr -d '"\\')
  printf '{"label":"%s","key":"acked-K%s","error":"%s"}\n' "$1" "$2" "$message" >>"$RESULTS"
  log "$1 K=$2: $message"
}

# raft_state CLUSTER_TOML: "TERM LEADER", the highest Raft term and the leader its sync
# nodes know, from their admin /metrics ("? ?" when none answers).
raft_state() {
  python3 - "$1" <<'PY'
import re, sys, urllib.request
text = open(sys.argv[1]).read()
best = None
for block in text.split("[[node]]")[1:]:
    if 'role = "sync"' not in block:
        continue
    admin = re.search(r'^admin = "([^"]+)"', block, re.M)
    if not admin:
        continue
    try:
        body = urllib.request.urlopen(f"http://{admin.group(1)}/metrics", timeout=2).read().decode()
    except OSError:
        continue
    term = re.search(r"^foxrouter_raft_term(?:_total)? (\d+)", body, re.M)
    leader = re.search(r"^foxrouter_raft_leader_id(?:_total)? (\d+)", body, re.M)
    if term and leader and (best is None or int(term.group(1)) > best[0]):
        best = (int(term.group(1)), int(leader.group(1)))
print(*(best or ("?", "?")))
PY
}

# elections "TERM LEADER" "TERM LEADER": what changed between two raft_state readings.
elections() {
  local before=($1) after=($2)
  if [[ "${before[0]}" =~ ^[0-9]+$ && "${after[0]}" =~ ^[0-9]+$ ]]; then
    local moved=kept
    [ "${before[1]}" = "${after[1]}" ] || moved="moved ${before[1]}->${after[1]}"
    echo "elections $((after[0] - before[0])), leader $moved"
  else
    echo "elections unknown (no sync admin answered)"
  fi
}

# ---------------------------------------------------------------- foxrouter
run_foxrouter() { # k run
  local k=$1 dir="$WORK/fox-$1-$2" base id deadline
  mkdir -p "$dir"
  base=$(pick_base 27)
  if ! "$FOXROUTER_BIN" cluster init "$dir" --base-port "$base" >/dev/null 2>"$dir/init.err"; then
    error_row foxrouter "$k" "cluster init failed: $(tail -1 "$dir/init.err")"
    return 0
  fi
  for id in 1 2 3 4 5 6 7 8 9; do
    "$FOXROUTER_BIN" node --cluster "$dir/cluster.toml" --id "$id" $NODE_ARGS ${WORKERS:+--workers $WORKERS} --log warn \
      >"$dir/n$id.out" 2>"$dir/n$id.err" &
    PIDS+=($!); SIDE_PIDS+=($!)
  done
  deadline=$((SECONDS + 30))
  for id in 1 2 3 4 5 6 7 8 9; do
    until grep -qE '^LISTEN (ws|peer) ' "$dir/n$id.out" 2>/dev/null; do
      if [ $SECONDS -ge $deadline ]; then
        error_row foxrouter "$k" "node $id did not start: $(tail -1 "$dir/n$id.err")"
        stop_side; return 0
      fi
      sleep 0.1
    done
  done
  ws() { grep '^LISTEN ws ' "$dir/n$1.out" | awk '{print $3}'; }
  local snapshot cpu raft_before raft_after
  # The first election is not the load's: wait (bounded) until the sync nodes know a leader.
  deadline=$((SECONDS + 15))
  raft_before=$(raft_state "$dir/cluster.toml")
  while [[ ! "$raft_before" =~ ^[0-9]+\ [1-9] ]] && [ $SECONDS -lt $deadline ]; do
    sleep 0.2; raft_before=$(raft_state "$dir/cluster.toml")
  done
  snapshot=$(cpu_snapshot)
  run_load "$dir" "$k" "$DELIVERY" "ws+msgpack://$(ws 1)/ws" "ws+msgpack://$(ws 2)/ws" "ws+msgpack://$(ws 3)/ws"
  cpu=$(cpu_since "$snapshot")
  raft_after=$(raft_state "$dir/cluster.toml")
  record foxrouter "$k" "$dir" "$(sum_fields "$cpu" 1 9)" \
    "entries $(sum_fields "$cpu" 1 3) ndb $(sum_fields "$cpu" 4 6) sync $(sum_fields "$cpu" 7 9); $(elections "$raft_before" "$raft_after")"
  stop_side
  rm -rf "$dir"
}

# ---------------------------------------------------------------- JetStream
# Node i (1..3): client port base+i-1, route port base+3+i-1, monitoring base+6+i-1.
write_nats_config() { # dir base i
  local dir=$1 base=$2 i=$3 sync=""
  [ "$JS_SYNC_ALWAYS" = 0 ] || sync="sync_interval: always"
  cat >"$dir/n$i.conf" <<EOF
server_name: n$i
listen: 127.0.0.1:$((base + i - 1))
http: 127.0.0.1:$((base + 6 + i - 1))
jetstream {
  store_dir: "$dir/store-n$i"
  $sync
}
cluster {
  name: foxbench
  listen: 127.0.0.1:$((base + 3 + i - 1))
  routes: [
    nats-route://127.0.0.1:$((base + 3))
    nats-route://127.0.0.1:$((base + 4))
    nats-route://127.0.0.1:$((base + 5))
  ]
}
EOF
}

run_jetstream() { # k run
  local k=$1 dir="$WORK/js-$1-$2" base i deadline placement
  mkdir -p "$dir"
  base=$(pick_base 9)
  for i in 1 2 3; do
    write_nats_config "$dir" "$base" "$i"
    "$NATS_SERVER_BIN" -c "$dir/n$i.conf" >"$dir/n$i.log" 2>&1 &
    PIDS+=($!); SIDE_PIDS+=($!)
  done
  deadline=$((SECONDS + 30))
  for i in 1 2 3; do
    if ! wait_port $((base + i - 1)) $deadline; then
      error_row jetstream "$k" "nats-server n$i did not start: $(tail -1 "$dir/n$i.log")"
      stop_side; return 0
    fi
  done
  local stream="jetstream://127.0.0.1:$base/FOXBENCH?replicas=3"
  if ! placement=$(timeout 60 "$FOX_BENCH_BIN" stream --target "$stream" --timeout 30 2>"$dir/stream.err"); then
    error_row jetstream "$k" "stream not ready: $(grep -m1 -i error "$dir/stream.err")"
    stop_side; return 0
  fi
  log "$placement"
  local snapshot cpu
  snapshot=$(cpu_snapshot)
  run_load "$dir" "$k" "" "$stream" "jetstream://127.0.0.1:$((base + 1))/FOXBENCH?replicas=3" \
    "jetstream://127.0.0.1:$((base + 2))/FOXBENCH?replicas=3"
  cpu=$(cpu_since "$snapshot")
  record jetstream "$k" "$dir" "$(sum_fields "$cpu" 1 3)" \
    "leader $(awk '{print $6}' <<<"$placement")"
  stop_side
  rm -rf "$dir"
}

# ---------------------------------------------------------------- the runs
START=$SECONDS
for k in $INFLIGHT; do
  [[ "$k" =~ ^[1-9][0-9]*$ ]] || { echo "--inflight: positive integers" >&2; exit 2; }
  for ((run = 1; run <= RUNS; run++)); do
    if wanted foxrouter; then log "foxrouter K=$k run $run"; run_foxrouter "$k" "$run"; fi
    if wanted jetstream; then log "jetstream K=$k run $run"; run_jetstream "$k" "$run"; fi
  done
done
log "done in $((SECONDS - START)) s"

mode="fsync before ack (default)"; [ -z "$NODE_ARGS" ] || mode="no fsync (--no-fsync)"
echo "# acked publishing, ${DURATION}s per row after ${WARMUP}s warm-up, 100-byte payloads, K in flight (K=1: one client on node 1; else K split over 3 clients, one per node)"
echo "# fresh clusters, interleaved: every K and run on newly started clusters, the sides taking turns; runs per K: $RUNS (rows: median)"
wanted foxrouter && echo "# foxrouter: 3/3/3 cluster (3 entry, 3 ndb, 3 sync), WAMP ws+msgpack publish acknowledge=true, $mode, runtime workers per node: ${WORKERS:-one per core}"
wanted jetstream && echo "# jetstream: nats-server $JS_VERSION, 3 nodes, stream FOXBENCH R3 file storage, async-nats PubAck; fsync: $JS_FSYNC"
echo "# machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -r); cpu_s: CPU seconds of all the side's server processes during the row"
"$FOX_BENCH_BIN" report --one-table "$RESULTS"
# A failed row makes the run fail, so that the smoke run (--duration 1 --inflight 16) is a test.
if grep -q '"error"' "$RESULTS"; then log "some rows failed (ERROR above)"; exit 1; fi
