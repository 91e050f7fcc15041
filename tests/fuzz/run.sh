#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan, build/fuzz) and runs each
# for a bounded time, starting from its seed corpus under tests/fuzz/corpus/.
# Exits non-zero when a target finds a crash or a broken invariant; the input
# that did it is left in build/fuzz/findings/.
#
#   tests/fuzz/run.sh                 every target, MAILER_FUZZ_SECONDS each (default 60)
#   tests/fuzz/run.sh csv_reader      only the named targets
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
seconds=${MAILER_FUZZ_SECONDS:-60}
dir=build/fuzz

mkdir -p "$dir"
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DMAILER_FUZZ=ON -DMAILER_TESTS=OFF >"$dir.configure.log" 2>&1 || {
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
status=0
for name in "${targets[@]}"; do
  work="$dir/corpus/$name"
  findings="$dir/findings/$name"
  rm -rf "$work" && mkdir -p "$work" "$findings"
  # The seeds are copied so that the run's discoveries stay out of the tree.
  [ -d "tests/fuzz/corpus/$name" ] && cp -r "tests/fuzz/corpus/$name/." "$work/"
  start=$SECONDS
  if "$dir/tests/fuzz/${name}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$findings/" "$work" >"$findings.log" 2>&1; then
    echo "fuzz $name: ok, $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$findings.log" |
      grep -o '[0-9]*$') runs in $((SECONDS - start)) s"
  else
    echo "fuzz $name: FAILED (input and log in $findings/)"; tail -n 40 "$findings.log"; status=1
  fi
done
exit "$status"
