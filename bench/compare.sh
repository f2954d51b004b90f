#!/usr/bin/env bash
# Side-by-side benchmark: foxrouter against Mosquitto, rumqttd, rmqttd (MQTT) and Crossbar
# (WAMP), and against fox-relay, the physical limit (a relay that only moves the frames).
#
#   bench/compare.sh [--quick] [--runs N] [--duration SECONDS] [--no-install] [--no-build]
#                    [--idle N] [--only all|load|idle] [--out DIR]
#                    [--routers foxrouter,mosquitto,rumqttd,rmqttd,crossbar,relay,foxrouter-noadmin,
#                               foxrouter-before]
#                    [--protocols mqtt,wamp]
#                    [--fox-workers N] [--no-pin] [--no-fresh] [--no-split]
#   FOXROUTER_BIN / FOX_BENCH_BIN / FOX_RELAY_BIN override the binaries (default
#   target/release/…). FOXROUTER_BEFORE_BIN is the router `foxrouter-before` (an older
#   build, run exactly as `foxrouter` is, admin listener and scrapes included): before and
#   after a change in one fresh, interleaved run, `RATIO <row> foxrouter-before` = after /
#   before.
#
# Installs missing peers (Mosquitto from Debian, rumqttd and rmqttd with cargo install into
# bench/.peers/rumqttd and bench/.peers/rmqttd — rmqttd needs Debian's protobuf-compiler and
# cmake, installed when missing, and builds for about 20 minutes —, Crossbar with pip into
# bench/.peers/crossbar-venv), builds fox-bench, fox-relay and foxrouter in release mode,
# starts every router on loopback with the same queue limits, runs the same fox-bench
# scenarios against each, stops everything and prints one table per scenario with
# `RATIO <scenario> <peer> <foxrouter / peer>` lines. A peer that cannot be installed or
# started, or a scenario that fails, shows as an ERROR row (never a made-up number).
#
# Peers: rmqttd runs with its HTTP API, ACL and counter plugins off (no default-on plugin
# is loaded), its cluster gRPC port on 127.0.0.1, its busy check off (it refuses new
# connections while the machine's load is high, always so with a load generator beside it)
# and one listener serving MQTT 3.1.1 and 5. `relay` is fox-relay (crate fox-demos): it
# forwards each publish to the subscribers of exactly its topic and answers the handshakes
# with fixed replies (see demos/src/relay); `RATIO ... relay` is foxrouter / relay, so 0.5
# means foxrouter runs at half the rate of moving the frames. The relay runs every row but
# RPC (it has none) and the idle rows (it is a throughput baseline only).
#
# Two load generators (--no-split: off): a run in which fox-bench was 85% busy or more
# measured the client. Pairs, acked, fan-in and fan-out rows with 2 or more connections are
# then run again on a freshly started router by two fox-bench processes at once sharing the
# row's topics (`fox-bench run --part 0/2` and `1/2`: pairs, publishers and subscribers
# dealt between them, fan-out's one publisher and fan-in's one subscriber in the first),
# combined with `fox-bench combine`; that row then stands for the router when it did more
# than one process (else the one-process row, noting the rerun's figure); its note says
# `2 load generators` with the one-process figure beside it, and `still busy ...: the router
# was not the limit` when the two together were still 85% busy of the cores they shared
# (`and the router busy too: both were a limit` when the router also used 95% of its core)
# (pinned on two cores they share one). One-connection, RPC and fixed-rate rows are not
# split; the table header lists the client-bound ones.
#
# --quick: one 2-second run per scenario (N with --runs N), a reduced scenario list.
# --idle N: idle connections for the memory rows (0: skip): MQTT 3.1.1 (clean session,
# keep alive 60 s, no subscription), WAMP over WebSocket (JSON) and RawSocket (MsgPack)
# after HELLO / WELCOME, from 127.0.0.2.. source addresses; each row reports router RSS per
# connection and logins (CONNACK / WELCOME) per second. --only idle: just those rows.
# N is capped below `ulimit -Hn` (each connection is a descriptor in both processes).
# --routers / --protocols: run a subset (comma-separated), e.g. foxrouter alone before and
# after a change, or only the MQTT scenarios.
# --fox-workers N: foxrouter's runtime worker threads (default 0: foxrouter's own default,
# one per core). The table header prints the value.
# Pinned by default: every router (foxrouter and each peer alike) runs on CPU 0 and
# fox-bench on the others (taskset), so the router under test and the load generator do not
# compete for a core and runs repeat. foxrouter's default worker count follows its CPU set
# (one worker when pinned). --no-pin runs everything unpinned (rounds 2 and 3 of
# BENCHMARKS.md); --pin is accepted for the default. Needs taskset and 2 CPUs, else unpinned.
# Fresh and interleaved by default: every run of every scenario gets a newly started router,
# and the routers take turns run by run (scenario 1: foxrouter, mosquitto, rumqttd, then
# again for run 2, ...). No row inherits the heap, queues or backlog of the rows before it
# (rumqttd's memory grows from row to row and its rates fall with it), and a shift in the
# machine's load (CPU steal comes and goes within minutes here) falls on every router
# alike instead of on whichever ran during it. --no-fresh runs all scenarios of one router
# on one process, then the next router (rounds 2 to 4).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS="$ROOT/bench/.peers"
QUICK=0
RUNS=3
RUNS_SET=""
DURATION=10
WARMUP=1
INSTALL=1
BUILD=1
IDLE_CONNECTIONS=10000
ONLY=all
OUT=""
ROUTERS=foxrouter,mosquitto,rumqttd,rmqttd,crossbar,relay
PROTOCOLS=mqtt,wamp
FOX_WORKERS=0
PIN=1
FRESH=1
SPLIT=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --runs) RUNS=$2; RUNS_SET=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --no-install) INSTALL=0 ;;
    --no-build) BUILD=0 ;;
    --idle) IDLE_CONNECTIONS=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --out) OUT=$2; shift ;;
    --routers) ROUTERS=$2; shift ;;
    --protocols) PROTOCOLS=$2; shift ;;
    --fox-workers) FOX_WORKERS=$2; shift ;;
    --pin) PIN=1 ;;
    --no-pin) PIN=0 ;;
    --fresh) FRESH=1 ;;
    --no-fresh) FRESH=0 ;;
    --split) SPLIT=1 ;;
    --no-split) SPLIT=0 ;;
    -h|--help) sed -n "2,/^set -euo/p" "$0" | sed "$ d"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then RUNS=${RUNS_SET:-1}; DURATION=2; WARMUP=0.5; IDLE_CONNECTIONS=0; fi

# Same queue limit for every broker: messages queued toward one session.
QUEUE_MAX=4096
# Requests in flight per connection (QoS 1/2, acked, rpc). Below Mosquitto's default
# max_inflight_messages (20): on MQTT 3.1.1 Mosquitto silently drops QoS 2 publishes past it.
INFLIGHT=16
# Same outbound window for every broker: QoS 1/2 messages sent to one client and not yet
# acknowledged (foxrouter mqtt_inflight_max, Mosquitto max_inflight_messages, rumqttd
# max_inflight_count, rmqttd max_inflight). 100 is the value of rumqttd's shipped config; with one subscriber
# it bounds fan-in throughput (window / round trip), so unequal windows decide that row.
WINDOW=100

mkdir -p "$PEERS"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fox-compare.XXXXXX")
OUT=${OUT:-$WORK}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ "$OUT" = "$WORK" ] || rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "[compare] $*" >&2; }

wanted() { # list item: whether item is in the comma-separated list
  [[ ",$1," == *",$2,"* ]]
}

# ---------------------------------------------------------------- install
MOSQUITTO=$(command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null || true)
RUMQTTD="$PEERS/rumqttd/bin/rumqttd"
RMQTTD="$PEERS/rmqttd/bin/rmqttd"
# The rmqttd release compared (0.24 is the one of issue 19); its rust-version is 1.94.
RMQTTD_VERSION="~0.24"
CROSSBAR="$PEERS/crossbar-venv/bin/crossbar"
if [ "$INSTALL" = 1 ]; then
  if [ -z "$MOSQUITTO" ]; then
    log "installing mosquitto"
    (apt-get install -y mosquitto >&2 || sudo apt-get install -y mosquitto >&2) || log "mosquitto install failed"
    MOSQUITTO=$(command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null || true)
  fi
  if [ ! -x "$RUMQTTD" ]; then
    log "installing rumqttd (several minutes; no --locked: its lock file does not build here)"
    cargo install rumqttd --root "$PEERS/rumqttd" -j 2 >&2 || log "rumqttd install failed"
  fi
  if [ ! -x "$RMQTTD" ] && wanted "$ROUTERS" rmqttd; then
    if ! command -v protoc > /dev/null || ! command -v cmake > /dev/null; then
      log "installing protobuf-compiler and cmake (rmqttd's build needs them)"
      (apt-get install -y protobuf-compiler cmake >&2 || sudo apt-get install -y protobuf-compiler cmake >&2) \
        || log "protobuf-compiler / cmake install failed"
    fi
    log "installing rmqttd $RMQTTD_VERSION (about 20 minutes on 2 cores)"
    nice -n 19 cargo install rmqttd --version "$RMQTTD_VERSION" --root "$PEERS/rmqttd" -j 2 >&2 \
      || log "rmqttd install failed"
  fi
  if [ ! -x "$CROSSBAR" ]; then
    log "installing crossbar into $PEERS/crossbar-venv"
    (python3 -m venv "$PEERS/crossbar-venv" && "$PEERS/crossbar-venv/bin/pip" install -q crossbar >&2) \
      || log "crossbar install failed"
  fi
fi

if [ "$BUILD" = 1 ]; then
  log "building fox-bench and foxrouter (release)"
  bash "$ROOT/scripts/setup.sh" --build-only >&2
  # The same selection as scripts/run.sh and cluster.sh: one set of release artifacts
  # (fox-relay included: it is a bin of fox-demos).
  (cd "$ROOT" && cargo build --release -j 2 --workspace --bins >&2)
fi
BENCH=${FOX_BENCH_BIN:-$ROOT/target/release/fox-bench}
RELAY=${FOX_RELAY_BIN:-$(dirname "$BENCH")/fox-relay}
# Command prefixes placing the routers and the load generator on CPUs (--pin).
ROUTER_CPUS=()
BENCH_CPUS=()
if [ "$PIN" = 1 ]; then
  if [ "$(nproc)" -ge 2 ] && command -v taskset > /dev/null; then
    ROUTER_CPUS=(taskset -c 0)
    BENCH_CPUS=(taskset -c "1-$(($(nproc) - 1))")
  else
    log "pinning needs taskset and at least 2 CPUs: running unpinned"
    PIN=0
  fi
fi
FOXROUTER=${FOXROUTER_BIN:-$ROOT/target/release/foxrouter}

# ---------------------------------------------------------------- helpers
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { # port seconds
  local deadline=$((SECONDS + $2))
  while ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

error_row() { # label scenario-key message
  printf '{"label":"%s","key":"%s","scenario":"%s","error":"%s"}\n' "$1" "$2" "${2%%-*}" "$3" >> "$RESULTS"
}

# The router under test (started by start_peer): how to start it again after a failed run.
PEER_PID=""
PEER_LABEL=""
PEER_PORT=""
PEER_LOG=""
PEER_CMD=()
RESTARTS=()

# start_peer LABEL PORT LOG COMMAND...: starts a router (on the routers' CPUs), waits for
# PORT, and remembers the command for restart_after_failure.
start_peer() {
  PEER_LABEL=$1; PEER_PORT=$2; PEER_LOG=$3; shift 3
  PEER_CMD=("$@")
  launch_peer
}

launch_peer() {
  "${ROUTER_CPUS[@]}" "${PEER_CMD[@]}" >> "$PEER_LOG" 2>&1 &
  PEER_PID=$!; PIDS+=("$PEER_PID")
  if wait_port "$PEER_PORT" 20; then log "$PEER_LABEL pid $PEER_PID"; return 0; fi
  log "$PEER_LABEL did not start (see $PEER_LOG)"
  stop_peer
  return 1
}

# Stops the router started last and forgets it.
stop_peer() {
  if [ -n "$PEER_PID" ]; then kill "$PEER_PID" 2>/dev/null || true; wait "$PEER_PID" 2>/dev/null || true; fi
  PEER_PID=""
  PEER_CMD=()
}

# A run failed (the router crashed, hung or refused): the next runs get a freshly started
# router on the same ports, so one failure does not turn every later row into an error.
# rumqttd's router thread panics in the flat-out QoS 0 fan-out and the process then hangs.
# Every router is treated alike; the table header lists the restarts.
restart_after_failure() { # label
  [ "${#PEER_CMD[@]}" -gt 0 ] || return 0
  log "$1: a run failed; restarting it for the next runs"
  kill "$PEER_PID" 2>/dev/null || true
  wait "$PEER_PID" 2>/dev/null || true
  RESTARTS+=("$1")
  launch_peer || true
}

# Interleaved runs: PICK is the one scenario bench runs (its number in the MQTT list, then
# the WAMP list, as counted in BENCH_INDEX); 0 runs them all. DRY=1 only counts.
PICK=0
IDLE_ROW=mqtt
BENCH_INDEX=0
DRY=0
MQTT_COUNT=0
WAMP_COUNT=0

# bench LABEL PID TARGET ARGS...: RUNS runs of one scenario, JSON lines appended; a run in
# which fox-bench was the bottleneck is run again with two load generators (bench_split).
bench() {
  local label=$1 pid=$2 target=$3; shift 3
  local i line
  BENCH_INDEX=$((BENCH_INDEX + 1))
  [ "$DRY" = 0 ] || return 0
  [ "$PICK" = 0 ] || [ "$PICK" = "$BENCH_INDEX" ] || return 0
  supported "$label" "$@" || return 0
  for ((i = 0; i < RUNS; i++)); do
    pid=${PEER_PID:-$pid}
    line=$(bench_once "$pid" /dev/stdout "$label" "$target" "$@" | tail -1) || true
    if [ -n "$line" ]; then echo "$line" >> "$RESULTS"; else error_row "$label" "$*" "fox-bench failed"; fi
    echo "$line" | sed 's/^/  /' >&2
    if [ -z "$line" ] || [[ "$line" == *'"error":'* ]]; then
      # (Interleaved runs stop the router right after: the next run starts a new one anyway.)
      if [ "$PICK" = 0 ]; then restart_after_failure "$label"; fi
      continue
    fi
    if [ "$SPLIT" = 1 ] && client_bound "$line"; then bench_split "$label" "$pid" "$target" "$line" "$@"; fi
  done
}

# bench_once PID OUT LABEL TARGET ARGS...: one fox-bench run on the load generator's CPUs,
# its JSON line written to OUT.
bench_once() {
  local pid=$1 out=$2 label=$3 target=$4; shift 4
  timeout 300 "${BENCH_CPUS[@]}" "$BENCH" run --json --label "$label" --target "$target" ${pid:+--router-pid "$pid"} \
    --duration "$DURATION" --warmup "$WARMUP" --inflight "$INFLIGHT" "$@" 2>>"$WORK/bench.err" > "$out"
}

# Whether the router (or peer) LABEL has a row for the scenario in ARGS: fox-relay has no
# RPC, and is no idle-memory baseline (it keeps a 64 KiB read buffer per connection; 12 KiB
# of RSS per idle MQTT connection, 142 KiB per WebSocket in a 1,000-connection try).
supported() { # label args...
  local label=$1; shift
  [ "$label" = relay ] || return 0
  [[ " $* " != *" --scenario rpc "* && " $* " != *" --scenario idle "* ]]
}

# Whether fox-bench's row LINE says it was at least 85% busy (report.rs shows the same;
# SPLIT_BUSY_MIN_PCT in the environment changes it here, to try the rerun path).
client_bound() { # json-line
  python3 -c 'import json, sys; sys.exit(0 if (json.loads(sys.argv[1]).get("bench_busy_pct") or 0) >= float(sys.argv[2]) else 1)' \
    "$1" "${SPLIT_BUSY_MIN_PCT:-85}" 2>/dev/null
}

# json_split_summary FIRST-LINE FILES...: the row's key, and the highest router_cpu_s and
# router_peak_rss_kib of the parts' rows ("" when none), on one line.
json_split_summary() {
  python3 - "$@" <<'PY'
import json, sys
key = json.loads(sys.argv[1]).get("key", "?")
parts = []
for path in sys.argv[2:]:
    try:
        parts.append(json.loads(open(path).read().strip().splitlines()[-1]))
    except (OSError, ValueError, IndexError):
        pass
def highest(field):
    values = [p[field] for p in parts if isinstance(p.get(field), (int, float))]
    return str(max(values)) if values else ""
print(key, highest("router_cpu_s") or "-", highest("router_peak_rss_kib") or "-")
PY
}

# The value after NAME in ARGS ("" when absent).
arg_value() { # name args...
  local name=$1; shift
  while [ $# -gt 1 ]; do
    if [ "$1" = "$name" ]; then echo "$2"; return; fi
    shift
  done
}

SPLIT_KEYS=()
UNSPLIT_KEYS=()
# bench_split LABEL PID TARGET LINE ARGS...: the row of LINE again with two fox-bench
# processes at once (`--part 0/2` and `--part 1/2` on one shared topic: pairs, publishers
# and subscribers dealt between them, fan-out's publisher and fan-in's subscriber in part
# 0); one combined row (same key, "parts": 2) appended. Fresh runs (the default) get a
# newly started router for it (same command and ports); --no-fresh keeps its one process.
# Not split: one-connection rows, RPC (callers in one process could call before the
# callee in the other registered), fixed-rate rows (their rate is not client-bound).
bench_split() {
  local label=$1 pid=$2 target=$3 line=$4; shift 4
  local key scenario connections dir cpu rss combined word part generators=()
  read -r key _ _ <<< "$(json_split_summary "$line")"
  scenario=$(arg_value --scenario "$@")
  connections=$(arg_value --connections "$@")
  [ "$scenario" != idle ] || return 0
  if [[ " pairs acked fanin fanout " != *" $scenario "* ]] || [ "${connections:-1}" -lt 2 ] \
    || [ -n "$(arg_value --rate "$@")" ]; then
    wanted "$(IFS=,; echo "${UNSPLIT_KEYS[*]}")" "$key" || UNSPLIT_KEYS+=("$key")
    return 0
  fi
  wanted "$(IFS=,; echo "${SPLIT_KEYS[*]}")" "$key" || SPLIT_KEYS+=("$key")
  [ "$FRESH" = 0 ] || relaunch_peer
  pid=${PEER_PID:-$pid}
  dir=$(mktemp -d "$WORK/split.XXXXXX")
  word="split$RANDOM$RANDOM"
  for part in 0 1; do
    bench_once "$pid" "$dir/$part.json" "$label" "$target" "$@" --part "$part/2" --topic-prefix "$word" &
    generators+=("$!")
  done
  # Only these two: a bare `wait` would also wait for the routers running in the background.
  for part in "${generators[@]}"; do wait "$part" 2>/dev/null || true; done
  read -r _ cpu rss <<< "$(json_split_summary "$line" "$dir/0.json" "$dir/1.json")"
  [ "$cpu" != - ] || cpu=""
  [ "$rss" != - ] || rss=""
  combined=$("$BENCH" combine --label "$label" --key "$key" ${cpu:+--cpu-seconds "$cpu"} \
    --note "2 load generators" "$dir/0.json" "$dir/1.json") || combined=""
  if [ -z "$combined" ]; then
    combined=$(printf '{"label":"%s","key":"%s","parts":2,"error":"fox-bench combine failed"}' "$label" "$key")
  fi
  # (The router's peak RSS: the same process under both parts.)
  [ -z "$rss" ] || combined="${combined%\}},\"router_peak_rss_kib\":$rss}"
  echo "$combined" >> "$RESULTS"
  echo "$combined" | sed 's/^/  split: /' >&2
}

# A fresh router for the two-generator rerun (Crossbar, started without start_peer, keeps
# its process).
relaunch_peer() {
  [ "${#PEER_CMD[@]}" -gt 0 ] || return 0
  kill "$PEER_PID" 2>/dev/null || true
  wait "$PEER_PID" 2>/dev/null || true
  launch_peer || true
}

# ---------------------------------------------------------------- scenarios

mqtt_scenarios() { # label pid addr_v4 addr_v5
  local label=$1 pid=$2 v4=$3 v5=$4
  BENCH_INDEX=0
  wanted "$PROTOCOLS" mqtt || return 0
  if [ "$PHASE" = load ]; then
  bench "$label" "$pid" "mqtt://$v4" --scenario pairs --qos 0 --connections 1
  bench "$label" "$pid" "mqtt://$v4" --scenario pairs --qos 1 --connections 1
  bench "$label" "$pid" "mqtt://$v4" --scenario fanin --qos 1 --connections 10
  bench "$label" "$pid" "mqtt://$v4" --scenario fanout --qos 1 --connections 10
  # Independent pairs: one pair ties for every broker (client and loopback round trip);
  # 4 and 16 pairs load the router (issue 19).
  bench "$label" "$pid" "mqtt://$v4" --scenario pairs --qos 1 --connections 16
  bench "$label" "$pid" "mqtt://$v4" --scenario pairs --qos 2 --connections 16
  if [ "$QUICK" = 0 ]; then
    bench "$label" "$pid" "mqtt://$v4" --scenario pairs --qos 1 --connections 4
    bench "$label" "$pid" "mqtt://$v4" --scenario pairs --qos 2 --connections 4
    bench "$label" "$pid" "mqtt://$v4" --scenario fanin --qos 0 --connections 10
    bench "$label" "$pid" "mqtt://$v4" --scenario fanout --qos 0 --connections 10
    bench "$label" "$pid" "mqtt://$v4" --scenario pairs --qos 2 --connections 1
    bench "$label" "$pid" "mqtt://$v5" --scenario pairs --qos 1 --connections 1 --mqtt-version 5
    bench "$label" "$pid" "mqtt://$v4" --scenario acked --qos 1 --connections 4
    # Latency under the same fixed load on every broker.
    bench "$label" "$pid" "mqtt://$v4" --scenario pairs --qos 0 --connections 1 --rate 20000
    bench "$label" "$pid" "mqtt://$v4" --scenario pairs --qos 1 --connections 1 --rate 20000
  fi
  fi
  if [ "$PHASE" = idle ]; then
    # Idle holds its connections for a fixed settle time; --duration does not apply. One
    # run: a second run on the same process reuses the memory the first one freed and
    # would measure ~0 bytes per connection.
    local RUNS=1
    [ "$IDLE_ROW" = mqtt ] || return 0
    bench "$label" "$pid" "mqtt://$v4" --scenario idle --connections "$IDLE_CONNECTIONS" --source-ips "$SOURCE_IPS"
  fi
}

wamp_scenarios() { # label pid ws_addr rs_addr
  local label=$1 pid=$2 ws=$3 rs=$4
  BENCH_INDEX=$MQTT_COUNT
  wanted "$PROTOCOLS" wamp || return 0
  if [ "$PHASE" = idle ]; then
    # As the MQTT idle row: one run on a fresh router; HELLO / WELCOME, then nothing.
    local RUNS=1 url
    case "$IDLE_ROW" in
      ws) url="ws+json://$ws/ws" ;;
      rs) url="rs+msgpack://$rs" ;;
      *) return 0 ;;
    esac
    bench "$label" "$pid" "$url" --scenario idle --connections "$IDLE_CONNECTIONS" --source-ips "$SOURCE_IPS"
    return 0
  fi
  bench "$label" "$pid" "ws+json://$ws/ws" --scenario rpc --connections 4
  bench "$label" "$pid" "rs+msgpack://$rs" --scenario pairs --connections 1
  if [ "$QUICK" = 0 ]; then
    bench "$label" "$pid" "ws+msgpack://$ws/ws" --scenario rpc --connections 4
    bench "$label" "$pid" "rs+msgpack://$rs" --scenario rpc --connections 4
    bench "$label" "$pid" "ws+json://$ws/ws" --scenario fanout --connections 10
    bench "$label" "$pid" "ws+msgpack://$ws/ws" --scenario acked --connections 4
    bench "$label" "$pid" "ws+json://$ws/ws" --scenario rpc --connections 1 --rate 2000
  fi
}

# ---------------------------------------------------------------- peers
# run_foxrouter, run_mosquitto, run_rumqttd, run_rmqttd, run_relay, run_crossbar.
# shellcheck source=bench/peers.sh
. "$ROOT/bench/peers.sh"

# Every idle connection is a file descriptor in the router and in fox-bench: raise the soft
# limit to the hard one, and cap the idle row below it (raising the hard limit needs
# CAP_SYS_RESOURCE; the header says when the row was capped).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)
IDLE_ASKED=$IDLE_CONNECTIONS
if [ "$FD_LIMIT" != unlimited ] && [ "$IDLE_CONNECTIONS" -gt $((FD_LIMIT - 256)) ]; then
  IDLE_CONNECTIONS=$((FD_LIMIT - 256))
  log "ulimit -n is $FD_LIMIT (hard limit $(ulimit -Hn)): idle rows capped at $IDLE_CONNECTIONS connections"
fi
# Source addresses 127.0.0.2 .. : about 28k ephemeral ports each, kept well under that.
SOURCE_IPS=$((IDLE_CONNECTIONS / 10000 + 8))
[ "$SOURCE_IPS" -le 253 ] || SOURCE_IPS=253
START=$SECONDS
# Idle memory is measured on freshly started routers: after the load scenarios their heaps
# hold freed memory that new connections reuse, which would hide the per-connection cost.
PHASES=()
[ "$ONLY" = idle ] || PHASES+=(load)
[ "$ONLY" = load ] || [ "$IDLE_CONNECTIONS" -le 0 ] || PHASES+=(idle)
# How many load scenarios each list has (for PICK).
count_scenarios() {
  local PROTOCOLS=mqtt,wamp DRY=1 PHASE=load
  mqtt_scenarios count "" - -
  MQTT_COUNT=$BENCH_INDEX
  wamp_scenarios count "" - -
  WAMP_COUNT=$((BENCH_INDEX - MQTT_COUNT))
}
count_scenarios

# Runs the wanted routers that have something to run in this phase (and for PICK).
run_routers() {
  local mqtt=0 wamp=0
  if wanted "$PROTOCOLS" mqtt && { [ "$PICK" = 0 ] || [ "$PICK" -le "$MQTT_COUNT" ]; }; then mqtt=1; fi
  if wanted "$PROTOCOLS" wamp && { [ "$PICK" = 0 ] || [ "$PICK" -gt "$MQTT_COUNT" ]; }; then wamp=1; fi
  if [ "$PHASE" = idle ]; then
    # One idle row per started router (IDLE_ROW): the MQTT routers for mqtt, the WAMP ones
    # for ws and rs.
    if [ "$IDLE_ROW" = mqtt ]; then wamp=0; else mqtt=0; fi
  fi
  if [ $((mqtt + wamp)) -gt 0 ] && wanted "$ROUTERS" foxrouter; then run_foxrouter; fi
  if [ $((mqtt + wamp)) -gt 0 ] && wanted "$ROUTERS" foxrouter-before; then run_foxrouter foxrouter-before; fi
  if [ $((mqtt + wamp)) -gt 0 ] && wanted "$ROUTERS" foxrouter-noadmin; then run_foxrouter foxrouter-noadmin; fi
  if [ "$mqtt" = 1 ] && wanted "$ROUTERS" mosquitto; then run_mosquitto; fi
  if [ "$mqtt" = 1 ] && wanted "$ROUTERS" rumqttd; then run_rumqttd; fi
  if [ "$mqtt" = 1 ] && wanted "$ROUTERS" rmqttd; then run_rmqttd; fi
  if [ "$wamp" = 1 ] && wanted "$ROUTERS" crossbar; then run_crossbar; fi
  if [ $((mqtt + wamp)) -gt 0 ] && [ "$PHASE" = load ] && wanted "$ROUTERS" relay; then run_relay; fi
}

for PHASE in "${PHASES[@]}"; do
  if [ "$PHASE" = load ] && [ "$FRESH" = 1 ]; then
    # One run per started router, the routers taking turns (see --no-fresh above).
    runs=$RUNS; RUNS=1
    for ((PICK = 1; PICK <= MQTT_COUNT + WAMP_COUNT; PICK++)); do
      for ((run = 0; run < runs; run++)); do run_routers; done
    done
    PICK=0; RUNS=$runs
  elif [ "$PHASE" = idle ]; then
    # Every idle row on fresh routers: a router that already held and freed connections
    # would reuse that memory and show ~0 bytes per connection.
    for IDLE_ROW in mqtt ws rs; do run_routers; done
  else
    run_routers
  fi
done
log "done in $((SECONDS - START)) s; raw results: $RESULTS"

echo "# fox-bench compare $(date -u +%FT%TZ) runs=$RUNS duration=${DURATION}s payload=100B inflight=$INFLIGHT window=$WINDOW queue=$QUEUE_MAX"
echo "# machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "# foxrouter and fox-relay --workers $FOX_WORKERS (0: one per core); peers run with their own defaults"
if [ "$PIN" = 1 ]; then
  echo "# pinned: every router on CPU 0 (${ROUTER_CPUS[*]}), fox-bench on ${BENCH_CPUS[*]}"
fi
if [ "$FRESH" = 1 ]; then
  echo "# fresh, interleaved: every run on a newly started router, the routers taking turns run by run"
else
  echo "# one process per router for all its scenarios, in table order (--no-fresh)"
fi
if [ "$IDLE_CONNECTIONS" != "$IDLE_ASKED" ] && [ "$ONLY" != load ]; then
  echo "# idle rows capped at $IDLE_CONNECTIONS connections (asked $IDLE_ASKED): ulimit -n $FD_LIMIT, hard limit $(ulimit -Hn)"
fi
if [ "$SPLIT" = 1 ]; then
  echo "# runs with fox-bench >= ${SPLIT_BUSY_MIN_PCT:-85}% busy rerun by 2 fox-bench processes sharing the row (--part 0/2, 1/2) on a fresh router: ${SPLIT_KEYS[*]:-none}"
  if [ "${#UNSPLIT_KEYS[@]}" -gt 0 ]; then
    echo "# client-bound and not split (one connection, RPC or a fixed rate; figures are lower bounds): ${UNSPLIT_KEYS[*]}"
  fi
fi
if [ "${#RESTARTS[@]}" -gt 0 ]; then
  echo "# restarted after a failed run (the failed run is an ERROR row): ${RESTARTS[*]}"
fi
"$BENCH" report "$RESULTS"
