#!/usr/bin/env bash
# Runs the resource-lock demo band under supervisord: builds foxrouter and resource-lock,
# then starts supervisord/resource-lock.ini in the foreground (Ctrl-C stops the band).
# Watch it with: tail -f target/band/worker-*.log
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v supervisord >/dev/null || bash scripts/setup.sh
bash scripts/setup.sh --build-only
# The same cargo selection as scripts/test.sh: one set of debug artifacts for both (a
# narrower -p selection unifies features differently and rebuilds, RocksDB's C++ included).
cargo build --workspace --all-targets
export FOX_BIN_DIR="${FOX_BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/debug}"
export FOX_LOG_DIR="${FOX_LOG_DIR:-$root/target/band}"
export FOX_WS="${FOX_WS:-127.0.0.1:8080}"
export FOX_HOLD_MS="${FOX_HOLD_MS:-2000}"
export FOX_PAUSE_MS="${FOX_PAUSE_MS:-500}"
mkdir -p "$FOX_LOG_DIR"
echo "band logs in $FOX_LOG_DIR"
exec supervisord -c supervisord/resource-lock.ini
