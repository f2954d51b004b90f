#!/usr/bin/env bash
# Starts foxrouter with the embedded defaults (README's run command): installs what the build
# needs if missing (libclang for RocksDB's bindings, via scripts/setup.sh --build-only), then
# builds the release binaries (`cargo build --release --workspace --bins`, the same selection
# as bench/: one set of release artifacts) and runs `foxrouter serve` with any arguments
# given here, e.g.
#   scripts/run.sh --data ./data --config router.toml
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh --build-only
cargo build --release --workspace --bins
exec "${CARGO_TARGET_DIR:-$root/target}/release/foxrouter" serve "$@"
