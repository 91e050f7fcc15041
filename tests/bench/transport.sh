#!/usr/bin/env bash
# SMTP transport throughput beside Postfix's smtp-source, to the same
# smtp-sink in the same run: N messages of 4 KB over 20 connections.
#
#   tests/bench/transport.sh [MESSAGES] [BUILD_DIR]
#
# BUILD_DIR (default build) must hold built `sender` and `throttle` libraries
# (cmake --build BUILD_DIR --target sender). Prints messages/s for both and
# the ratio ours / smtp-source.
set -euo pipefail

N=${1:-20000}
BUILD=${2:-build}
SESSIONS=20
BYTES=4096
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d)
trap 'kill $SINK_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT

c++ -std=c++20 -O2 -DBOOST_ASIO_NO_DEPRECATED -I"$ROOT" "$ROOT/tests/bench/transport_bench.cpp" \
  "$BUILD/sender/libsender.a" "$BUILD/throttle/libthrottle.a" \
  $(pkg-config --libs libcurl libcares) -lpthread -o "$WORK/transport_bench"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SINK_USER=()
[ "$(id -u)" = 0 ] && SINK_USER=(-u nobody)
/usr/sbin/smtp-sink "${SINK_USER[@]}" -m 256 127.0.0.1:"$PORT" 256 &
SINK_PID=$!
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done

start=$(date +%s.%N)
/usr/sbin/smtp-source -d -s "$SESSIONS" -m "$N" -l "$BYTES" 127.0.0.1:"$PORT"
end=$(date +%s.%N)
source_rate=$(python3 -c "print(round($N/($end-$start),1))")

ours=$("$WORK/transport_bench" "smtp://127.0.0.1:$PORT" "$N" "$SESSIONS" "$BYTES")
ours_rate=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['per_second'])" "$ours")

echo "smtp-source: $source_rate messages/s ($N messages, $SESSIONS sessions, $BYTES bytes)"
echo "transport:   $ours_rate messages/s  $ours"
python3 -c "print('ratio transport/smtp-source: %.2f' % ($ours_rate/$source_rate))"
