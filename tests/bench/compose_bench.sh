#!/usr/bin/env bash
# Composition and DKIM signing throughput: builds tests/bench/compose_bench.cpp
# against the sender library of a build directory, runs it, and prints
# `openssl speed` sign/s for rsa2048 and ed25519 beside it for comparison.
# Usage: tests/bench/compose_bench.sh [BUILD_DIR] [SECONDS_PER_CASE]
#   BUILD_DIR defaults to build (configured with cmake -S . -B build).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build}"
seconds="${2:-3}"

cmake --build "$build" --target sender >/dev/null
out="$build/tests/bench"
mkdir -p "$out"
c++ -std=c++20 -O2 -I"$root" "$root/tests/bench/compose_bench.cpp" \
  "$build/sender/libsender.a" -lssl -lcrypto -lfmt -lpthread -o "$out/compose_bench"

echo "== mailer compose + DKIM (messages/s, one thread)"
"$out/compose_bench" "$seconds"
echo "== openssl speed (signatures per CPU second, one thread)"
openssl speed -seconds "$seconds" rsa2048 ed25519 2>/dev/null | grep -E '^rsa 2048|Ed25519'
