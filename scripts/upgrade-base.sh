#!/usr/bin/env bash
# Builds the foxrouter binary of an earlier commit, for the rolling-upgrade test
# (tests/interop/test_cluster_upgrade.py), and prints its path. The base is a commit that
# landed with the node protocol's previous version: a cluster of its nodes is upgraded to
# this build one node at a time (docs/cluster.md, *Rolling upgrades*). When a change raises
# PROTOCOL_VERSION again, move BASE to the last landed commit before that change.
#
# The base is built in this project's target directory, so it shares every compiled
# dependency (RocksDB included) and costs a build of the workspace's own crates only. Its
# crates get another version, so their artifacts never overwrite this tree's; the one file
# both builds write, target/debug/foxrouter, is put back by a build of this tree.
# Cached: a second call only prints the path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# Protocol version 7, landed at stop 34 (this tree speaks 8).
base="${FOX_UPGRADE_BASE:-6b33d3d811c8b0505b6101cce1fca8c20192c2d8}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="$target_dir/upgrade-base/foxrouter-${base:0:12}"
if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi
cd "$root"
if ! git cat-file -e "$base^{commit}" 2>/dev/null; then
  # A shallow clone lacks it: ask where this clone came from.
  git fetch --quiet origin "$base" >&2 || true
fi
git cat-file -e "$base^{commit}" 2>/dev/null || {
  echo "upgrade-base.sh: commit $base is not in this clone's history (shallow clone?)" >&2
  exit 1
}
src=$(mktemp -d "${TMPDIR:-/tmp}/foxrouter-upgrade-base.XXXXXX")
trap 'rm -rf "$src"' EXIT
git archive "$base" | tar -x -C "$src"
sed -i 's/^version = "0.1.0"$/version = "0.0.0-upgrade-base"/' "$src/Cargo.toml"
grep -q '^version = "0.0.0-upgrade-base"$' "$src/Cargo.toml" || {
  echo "upgrade-base.sh: the base's workspace version was not found in its Cargo.toml" >&2
  exit 1
}
echo "upgrade-base.sh: building foxrouter at ${base:0:12} (once; cached in $out)" >&2
CARGO_TARGET_DIR="$target_dir" cargo build --quiet --manifest-path "$src/Cargo.toml" --bin foxrouter >&2
mkdir -p "$(dirname "$out")"
cp "$target_dir/debug/foxrouter" "$out.tmp"
mv "$out.tmp" "$out"
# Put this tree's binary back in target/debug (a fresh build only copies it there again).
CARGO_TARGET_DIR="$target_dir" cargo build --quiet --bin foxrouter >&2
cmp -s "$out" "$target_dir/debug/foxrouter" && {
  echo "upgrade-base.sh: target/debug/foxrouter is still the base's" >&2
  exit 1
}
echo "$out"
