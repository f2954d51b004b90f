#!/usr/bin/env bash
# Starts foxrouter with the embedded defaults (README's run command): installs what the build
# needs if missing (libclang for RocksDB's bindings, via scripts/setup.sh --build-only), then
# `cargo run --release -p fox-router -- serve` with any arguments given here, e.g.
#   scripts/run.sh --data ./data --config router.toml
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh --build-only
exec cargo run --release -p fox-router -- serve "$@"
