#!/usr/bin/env bash
# SmtpClient against `mailer sink --latency`: C connections on one thread,
# the sink answering every final "." after L. Prints the accepted rate beside
# the ceiling C / L (plus the time to answer MAIL/RCPT/DATA, which the
# pipelined envelope costs one round trip of).
#
#   tests/bench/smtp_client_latency.sh [CONNECTIONS] [LATENCY_MS] [SECONDS] [BUILD_DIR]
#
# BUILD_DIR (default build/release) must hold the `mailer` binary and the
# `sender` and `throttle` libraries.
set -euo pipefail

C=${1:-80}
L=${2:-250}
S=${3:-10}
BUILD=${4:-build/release}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d)
trap 'kill $SINK_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT

c++ -std=c++20 -O2 -DBOOST_ASIO_NO_DEPRECATED -I"$ROOT" "$ROOT/tests/bench/smtp_client_bench.cpp" \
  "$BUILD/sender/libsender.a" "$BUILD/throttle/libthrottle.a" -lssl -lcrypto -lpthread \
  -o "$WORK/smtp_client_bench"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BUILD/app/mailer" sink --listen 127.0.0.1:"$PORT" --latency "${L}ms" >"$WORK/sink.log" 2>&1 &
SINK_PID=$!
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done

ours=$("$WORK/smtp_client_bench" 127.0.0.1 "$PORT" "$C" "$S")
rate=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['per_second'])" "$ours")
ceiling=$(python3 -c "print(round($C/($L/1000.0),1))")
echo "connections $C, latency ${L} ms: $rate messages/s; ceiling C/L = $ceiling ($(python3 -c "print(round($rate/$ceiling,2))")×)  $ours"
