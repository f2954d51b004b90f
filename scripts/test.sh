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
echo "== cargo build"
cargo build --workspace --all-targets
export FOXROUTER_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/foxrouter"
echo "== cargo test"
cargo test --workspace
echo "== end-to-end tests"
[ -x "$FOXROUTER_BIN" ] || { echo "test.sh: $FOXROUTER_BIN was not built" >&2; exit 1; }
.venv/bin/python -m pytest -q -p no:cacheprovider --timeout 120 --tb=short -rfE tests/interop
