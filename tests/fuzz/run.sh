#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan, build/fuzz) and runs each
# for a bounded time, starting from its seed corpus under tests/fuzz/corpus/.
# Exits non-zero when a target finds a crash or a broken invariant; the input
# that did it is left in build/fuzz/findings/.
#
#   tests/fuzz/run.sh                 every target, MAILER_FUZZ_SECONDS each (default 60)
#   tests/fuzz/run.sh csv_reader      only the named targets
#   MAILER_FUZZ_PARALLEL=N            targets run at once (default: the number of cores)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
seconds=${MAILER_FUZZ_SECONDS:-60}
dir=build/fuzz

mkdir -p "$dir"
# -O1 and line tables only, as libFuzzer's documentation advises: symbolized
# stack traces for a finding, at half the compile time of -O2 -g.
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DMAILER_FUZZ=ON -DMAILER_TESTS=OFF \
  "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only -DNDEBUG" \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only -DNDEBUG" >"$dir.configure.log" 2>&1 || {
  cat "$dir.configure.log"; exit 1; }
cmake --build "$dir" -j"$(nproc)" --target fuzz_targets

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for bin in "$dir"/tests/fuzz/*_fuzz; do targets+=("$(basename "$bin" _fuzz)"); done
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# One target: its verdict on stdout, exit status non-zero on a finding.
run_target() {
  local name=$1 work="$dir/corpus/$1" findings="$dir/findings/$1" start=$SECONDS
  rm -rf "$work" && mkdir -p "$work" "$findings"
  # The seeds are copied so that the run's discoveries stay out of the tree.
  [ -d "tests/fuzz/corpus/$name" ] && cp -r "tests/fuzz/corpus/$name/." "$work/"
  if "$dir/tests/fuzz/${name}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$findings/" "$work" >"$findings.log" 2>&1; then
    echo "fuzz $name: ok, $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$findings.log" |
      grep -o '[0-9]*$') runs in $((SECONDS - start)) s"
  else
    echo "fuzz $name: FAILED (input and log in $findings/)"; tail -n 40 "$findings.log"
    return 1
  fi
}

# Each target is single-threaded: as many run at once as there are cores
# (MAILER_FUZZ_PARALLEL), so the phase takes targets / cores minutes, not
# one minute per target.
parallel=${MAILER_FUZZ_PARALLEL:-$(nproc)}
status=0 running=0
for name in "${targets[@]}"; do
  if [ "$running" -ge "$parallel" ]; then
    wait -n || status=1
    running=$((running - 1))
  fi
  run_target "$name" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || status=1
  running=$((running - 1))
done
exit "$status"
