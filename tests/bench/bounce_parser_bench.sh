#!/usr/bin/env bash
# Bounce parser throughput: builds tests/bench/bounce_parser_bench.cpp
# against the lists library of a build directory and parses the corpus
# under tests/data/bounces/ round robin on one thread (target >= 20,000
# messages/s). Prints a figure; asserts nothing.
# Usage: tests/bench/bounce_parser_bench.sh [BUILD_DIR] [SECONDS] [CORPUS_DIR]
#   BUILD_DIR defaults to build/release.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build/release}"
seconds="${2:-3}"
corpus="${3:-$root/tests/data/bounces}"

cmake --build "$build" --target bounce_parser_bench >/dev/null
out="$build/tests"
mapfile -t files < <(find "$corpus" -type f -name "*.eml" | sort)
taskset -c 0 "$out/bounce_parser_bench" --bench "$seconds" "${files[@]}" 2>/dev/null ||
  "$out/bounce_parser_bench" --bench "$seconds" "${files[@]}"
