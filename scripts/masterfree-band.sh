#!/usr/bin/env bash
# Runs the masterfree band (supervisord/masterfree.ini): 3 entries, 3 ndb, 3 sync as
# separate processes. Builds foxrouter, writes $FOX_BAND_DIR/cluster.toml with
# `foxrouter cluster init` (once; delete the directory to start afresh), then starts
# supervisord in the foreground (Ctrl-C stops the band). Ports from FOX_BASE_PORT (default
# 7100): see the cluster file. Watch: tail -f $FOX_BAND_DIR/logs/n*.err
# With --lock: also three resource-lock workers, worker-N on entry N, competing for one
# mutex (supervisord/masterfree-lock.ini; their LOCKED / UNLOCKED lines in logs/worker-N.log).
set -euo pipefail
config=masterfree.ini
if [ "${1:-}" = "--lock" ]; then config=masterfree-lock.ini; fi
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v supervisord >/dev/null || bash scripts/setup.sh
bash scripts/setup.sh --build-only
# The same cargo selection as scripts/test.sh: one set of debug artifacts for both (a
# narrower -p selection unifies features differently and rebuilds, RocksDB's C++ included).
cargo build --workspace --all-targets
export FOX_BIN_DIR="${FOX_BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/debug}"
export FOX_BAND_DIR="${FOX_BAND_DIR:-$root/target/masterfree}"
export FOX_NODE_ARGS="${FOX_NODE_ARGS:-}"
if [ ! -f "$FOX_BAND_DIR/cluster.toml" ]; then
  "$FOX_BIN_DIR/foxrouter" cluster init "$FOX_BAND_DIR" --base-port "${FOX_BASE_PORT:-7100}"
fi
mkdir -p "$FOX_BAND_DIR/logs"
if [ "$config" = masterfree-lock.ini ]; then
  for n in 1 2 3; do
    ws=$(python3 -c 'import sys, tomllib
nodes = tomllib.load(open(sys.argv[1], "rb"))["node"]
print(next(n["ws"] for n in nodes if n["id"] == int(sys.argv[2])))' "$FOX_BAND_DIR/cluster.toml" "$n")
    export "FOX_LOCK_WS_$n=$ws"
  done
  export FOX_HOLD_MS="${FOX_HOLD_MS:-2000}" FOX_PAUSE_MS="${FOX_PAUSE_MS:-500}"
fi
echo "band in $FOX_BAND_DIR (cluster.toml, logs/)"
exec supervisord -c "supervisord/$config"
