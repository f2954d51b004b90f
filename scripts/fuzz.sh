#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60), one after another,
# and prints one line per target: executions, executions per second, and the result.
# Exits non-zero if any target crashed (a panic is a crash: a failed check or a bug),
# printing the file that reproduces it. docs/fuzzing.md explains the targets.
#
#   scripts/fuzz.sh [SECONDS]        # all targets
#   FUZZ_TARGETS="wamp_json mqtt_v5" scripts/fuzz.sh 30
#
# Works on stable Rust: no sanitizer (`--sanitizer none`), so nightly is not needed.
# Installs cargo-fuzz if it is missing. New inputs libFuzzer finds go to
# fuzz/corpus-work/<target>/ (ignored by git); fuzz/corpus/ and fuzz/regressions/ are
# only read. Reproduce a crash: cd fuzz && cargo fuzz run -s none -a TARGET FILE
set -euo pipefail
seconds=${1:-60}
case "$seconds" in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"
export CARGO_TERM_COLOR=never
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --quiet
fi
flags=(--sanitizer none --debug-assertions)
targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
echo "fuzz.sh: building the fuzz targets"
if ! cargo fuzz build "${flags[@]}" >"$logs/build" 2>&1; then
  tail -n 40 "$logs/build" >&2
  exit 1
fi
printf '%-20s %12s %10s  %s\n' target execs execs/s result
failed=0
for target in $targets; do
  mkdir -p "corpus-work/$target"
  dirs=("corpus-work/$target" "corpus/$target")
  [ -d "regressions/$target" ] && dirs+=("regressions/$target")
  log="$logs/$target"
  status=0
  cargo fuzz run "${flags[@]}" "$target" "${dirs[@]}" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  if [ -z "$execs" ]; then # a crash may end the run before the final stats
    execs=$(grep -o '^#[0-9]*' "$log" | tr -d '#' | sort -n | tail -n 1)
  fi
  execs=${execs:-0}
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  rate=${rate:-$((execs / (seconds > 0 ? seconds : 1)))}
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    failed=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    result="CRASH ${artifact:-(no crash file; log below)}"
  fi
  printf '%-20s %12s %10s  %s\n' "$target" "$execs" "$rate" "$result"
  if [ "$status" -ne 0 ]; then # the panic and its message, or the log's end
    { grep -A 2 -m 1 "panicked at" "$log" || tail -n 5 "$log"; } | head -n 4 | cut -c 1-300 | sed 's/^/    /'
  fi
done
exit "$failed"
