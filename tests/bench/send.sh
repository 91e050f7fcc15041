#!/usr/bin/env bash
# End-to-end sending throughput: a campaign of N recipients (default 100,000)
# with ~4 KB personalised messages, delivered by `mailer run` over 20
# connections to Postfix's smtp-sink, PostgreSQL state included; beside
# `smtp-source -d -s 20 -m N -l 4096` to the same sink in the same run. Then
# the same campaign signed with DKIM rsa-sha256 (2048-bit) and with
# ed25519-sha256, beside `openssl speed` sign/s. Prints messages/s, the ratio
# ours / smtp-source, and the worker's peak RSS.
#
#   tests/bench/send.sh [RECIPIENTS] [BUILD_DIR]
#
# BUILD_DIR (default build) must hold a built `mailer`. Uses a throwaway
# PostgreSQL cluster (deploy/pg-local.sh) and loopback only.
set -euo pipefail

N=${1:-100000}
BUILD=${2:-build}
SESSIONS=20
BYTES=4096
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MAILER=$(cd "$BUILD" && pwd)/app/mailer
WORK=$(mktemp -d)
chmod 755 "$WORK"
export MAILER_PG_DIR=$WORK/pg
SINK_PID=
cleanup() {
  [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null || true
  "$ROOT/deploy/pg-local.sh" destroy >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

URL=$("$ROOT/deploy/pg-local.sh" start)
export MAILER_DATABASE_URL=$URL

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SINK_USER=()
[ "$(id -u)" = 0 ] && SINK_USER=(-u nobody)
/usr/sbin/smtp-sink "${SINK_USER[@]}" -m 256 127.0.0.1:"$PORT" 256 &
SINK_PID=$!
for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done

head -c 32 /dev/urandom | base64 >"$WORK/secret"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$WORK/ed25519.pem" 2>/dev/null

# One provider (every recipient at example.org) with 20 connections and no
# rate ceiling worth the name: the sink never defers, so this measures the
# sending machinery, not the throttle.
config() {  # config DKIM_ALGORITHM|none KEY_FILE
  cat <<TOML
[sender]
helo_name = "bench.example.com"
default_route = "smtp://127.0.0.1:$PORT"
[providers.other]
initial_rate = 100000
max_rate = 100000
max_connections = $SESSIONS
burst = 200
[worker]
claim_batch = 2000
max_leased = 20000
flush_batch = 4000
flush_interval = "250ms"
[unsubscribe]
base_url = "https://mail.example.com"
secret_file = "$WORK/secret"
TOML
  if [ "$1" != none ]; then
    printf '[[dkim]]\ndomain = "example.com"\nselector = "bench"\nalgorithm = "%s"\nkey_file = "%s"\n' "$1" "$2"
  fi
}

M() { "$MAILER" --config "$WORK/mailer.toml" --log-level warn "$@"; }
config none "" >"$WORK/mailer.toml"
M migrate >/dev/null
psql "$URL" -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO domains (domain, provider) VALUES ('example.org', 'other:example.org');
INSERT INTO lists (name) VALUES ('bench');
INSERT INTO recipients (email, email_key, domain, attributes)
  SELECT 'reader' || i || '@example.org', 'reader' || i || '@example.org', 'example.org',
         jsonb_build_object('first_name', 'Reader ' || i, 'city', 'City ' || (i % 500))
  FROM generate_series(1, $N) i;
INSERT INTO list_members (list_id, recipient_id) SELECT 1, id FROM recipients;
VACUUM ANALYZE;
SQL

# About 4 KB of personalised text: each paragraph carries merge fields.
python3 - "$WORK/body.txt" <<'PY'
import sys
para = ("Dear {{first_name}}, here is this week's news for readers in {{city}}. "
        "We picked these stories for you and hope you enjoy them as much as we did. ")
with open(sys.argv[1], "w") as f:
    while f.tell() < 3900:
        f.write(para + "\n")
PY

smtp_source_rate() {
  local start end
  start=$(date +%s.%N)
  /usr/sbin/smtp-source -d -s "$SESSIONS" -m "$N" -l "$BYTES" 127.0.0.1:"$PORT"
  end=$(date +%s.%N)
  python3 -c "print(round($N/($end-$start),1))"
}

# run LABEL: one campaign over the list, sent by one worker; prints messages/s.
run() {
  local label=$1 id start end sent rss
  id=$(M campaign create --name "bench-$label" --list bench --from 'Bench <news@example.com>' \
    --subject 'News for {{first_name}}' --text "$WORK/body.txt" --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  M campaign start "$id" 2>/dev/null
  psql "$URL" -q -c "VACUUM ANALYZE deliveries"
  start=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$WORK/rss" "$MAILER" --config "$WORK/mailer.toml" --log-level warn \
    run --worker-id "bench-$label" --until-idle --campaign "$id" 2>>"$WORK/worker.err"
  end=$(date +%s.%N)
  sent=$(psql "$URL" -qtAc "SELECT count(*) FROM deliveries WHERE campaign_id = $id AND state = 'sent'")
  rss=$(cat "$WORK/rss")
  python3 -c "print(round($sent/($end-$start),1))" >"$WORK/rate"
  echo "$label: $sent/$N sent in $(python3 -c "print(round($end-$start,1))")s = $(cat "$WORK/rate") messages/s; worker peak RSS $((rss / 1024)) MB"
}

echo "== $N recipients, ~4 KB messages, $SESSIONS connections, smtp-sink on 127.0.0.1:$PORT"
# smtp-source's own rate varies by a quarter from run to run on a shared
# machine: three runs, each printed, and the median is the reference.
r1=$(smtp_source_rate); r2=$(smtp_source_rate); r3=$(smtp_source_rate)
source_rate=$(printf '%s\n' "$r1" "$r2" "$r3" | sort -n | sed -n 2p)
echo "smtp-source: $source_rate messages/s (median of $r1, $r2, $r3)"
run plain
plain=$(cat "$WORK/rate")
python3 -c "print('ratio mailer/smtp-source: %.2f' % ($plain/$source_rate))"

rsa_speed=$(openssl speed -seconds 3 rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ {print $6}')
config rsa-sha256 "$WORK/rsa.pem" >"$WORK/mailer.toml"
run dkim-rsa2048
echo "  openssl speed rsa2048: $rsa_speed sign/s (one core)"

ed_speed=$(openssl speed -seconds 3 ed25519 2>/dev/null | awk '/EdDSA \(Ed25519\)/ {print $7}')
config ed25519-sha256 "$WORK/ed25519.pem" >"$WORK/mailer.toml"
run dkim-ed25519
echo "  openssl speed ed25519: $ed_speed sign/s (one core)"

if [ -s "$WORK/worker.err" ]; then echo "worker stderr (last lines):"; tail -n 5 "$WORK/worker.err"; fi
