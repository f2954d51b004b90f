#!/usr/bin/env bash
# Runs every test of foxrouter: installs what the tests need (scripts/setup.sh), builds,
# runs the Rust unit/property/simulation tests, then the end-to-end tests that start the
# real binary and drive it with third-party clients (autobahn-python, paho-mqtt, mosquitto,
# and autobahn-js, wampy.js, MQTT.js from tests/js).
# Exits non-zero when any test fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
export CARGO_TERM_COLOR=never
# A cold build takes about 2.5 GB (RocksDB included). Say so up front when the disk is
# nearly full, rather than let the C++ archiver fail deep in RocksDB's build output.
target_dir="${CARGO_TARGET_DIR:-$root/target}"
free_kib=$(df -Pk "$(dirname "$target_dir")" 2>/dev/null | awk 'NR == 2 {print $4}')
if [ -n "$free_kib" ] && [ "$free_kib" -lt $((3 * 1024 * 1024)) ]; then
  echo "test.sh: warning: only $((free_kib / 1024)) MiB free for $target_dir; a cold build needs about 2.5 GB" >&2
fi
# Formatting and lints are part of the tests (a toolchain without the rustfmt or clippy
# component skips that step with a warning rather than failing for it).
echo "== cargo fmt --check, cargo clippy -D warnings"
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all --check
else
  echo "test.sh: warning: rustfmt is not installed; formatting not checked" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets --quiet -- -D warnings
else
  echo "test.sh: warning: clippy is not installed; lints not checked" >&2
fi
echo "== cargo build"
cargo build --workspace --all-targets
export FOXROUTER_BIN="$target_dir/debug/foxrouter"
# The previous node protocol version's binary, for the rolling-upgrade test: built from an
# earlier commit in this target directory (its own crates only; cached after the first run).
echo "== build the rolling-upgrade base (scripts/upgrade-base.sh)"
FOXROUTER_BASE_BIN=$(bash scripts/upgrade-base.sh)
export FOXROUTER_BASE_BIN
echo "== cargo test"
cargo test --workspace
# Each cargo-fuzz target for a few seconds (installs cargo-fuzz the first time, builds the
# targets: about 7 minutes cold; docs/fuzzing.md). The committed corpora and regressions
# already ran in cargo test.
echo "== fuzz smoke test (5 s per target)"
bash scripts/fuzz.sh 5
echo "== end-to-end tests"
[ -x "$FOXROUTER_BIN" ] || { echo "test.sh: $FOXROUTER_BIN was not built" >&2; exit 1; }
.venv/bin/python -m pytest -q -p no:cacheprovider --timeout 120 --tb=short -rfE tests/interop
