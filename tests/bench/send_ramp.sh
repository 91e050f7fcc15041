#!/usr/bin/env bash
# How the worker's send rate builds up over a run, second by second: one
# provider, 20 connections, ~4 KB messages to smtp-sink (send.sh's setup),
# once with [worker] max_leased = 4000 and once with 20000. Each connection
# carries messages_per_connection (100) messages, so the connections opened
# in a second (from the debug log) times 100 is that second's send rate.
# Shows how long claims of up to max_leased rows at the start keep the
# connections idle. Prints figures; asserts nothing.
#
#   tests/bench/send_ramp.sh [RECIPIENTS] [BUILD_DIR]
set -euo pipefail

N=${1:-50000}
BUILD=${2:-build/release}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MAILER=$(cd "$BUILD" && pwd)/app/mailer
WORK=$(mktemp -d)
chmod 755 "$WORK"
export MAILER_PG_DIR=$WORK/pg
SINK_PID=
cleanup() {
  if [ -n "$SINK_PID" ]; then kill "$SINK_PID" 2>/dev/null || true; fi
  "$ROOT/deploy/pg-local.sh" destroy >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

URL=$("$ROOT/deploy/pg-local.sh" start)
export MAILER_DATABASE_URL=$URL
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SINK_USER=()
if [ "$(id -u)" = 0 ]; then SINK_USER=(-u nobody); fi
/usr/sbin/smtp-sink "${SINK_USER[@]}" -m 256 127.0.0.1:"$PORT" 256 &
SINK_PID=$!
for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done
head -c 32 /dev/urandom | base64 >"$WORK/secret"

config() {  # config MAX_LEASED
  cat <<TOML
[sender]
helo_name = "bench.example.com"
default_route = "smtp://127.0.0.1:$PORT"
messages_per_connection = 100
[providers.other]
initial_rate = 100000
max_rate = 100000
max_connections = 20
burst = 200
[worker]
claim_batch = 2000
max_leased = $1
flush_batch = 4000
flush_interval = "250ms"
[unsubscribe]
base_url = "https://mail.example.com"
secret_file = "$WORK/secret"
TOML
}
M() { "$MAILER" --config "$WORK/mailer.toml" "$@"; }
config 20000 >"$WORK/mailer.toml"
M --log-level warn migrate >/dev/null
psql "$URL" -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO domains (domain, provider) VALUES ('example.org', 'other:example.org');
INSERT INTO lists (name) VALUES ('bench');
INSERT INTO recipients (email, email_key, domain, attributes)
  SELECT 'reader' || i || '@example.org', 'reader' || i || '@example.org', 'example.org',
         jsonb_build_object('first_name', 'Reader ' || i)
  FROM generate_series(1, $N) i;
INSERT INTO list_members (list_id, recipient_id) SELECT 1, id FROM recipients;
VACUUM ANALYZE;
SQL
python3 -c "open('$WORK/body.txt','w').write(('Dear {{first_name}}, this week\'s news for you, in about four kilobytes.\n' * 55))"

echo "== $N recipients, 20 connections, smtp-sink on 127.0.0.1:$PORT; load: $(uptime)"
for leased in 4000 20000; do
  config "$leased" >"$WORK/mailer.toml"
  id=$(M --log-level warn campaign create --name "ramp-$leased" --list bench \
    --from 'Bench <news@example.com>' --subject 'News for {{first_name}}' \
    --text "$WORK/body.txt" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  M --log-level warn campaign start "$id" 2>/dev/null
  psql "$URL" -q -c CHECKPOINT -c VACUUM
  start=$(date +%s.%N)
  M --log-level debug run --worker-id "ramp-$leased" --until-idle --campaign "$id" \
    2>"$WORK/worker.log"
  end=$(date +%s.%N)
  sent=$(psql "$URL" -qtAc "SELECT count(*) FROM deliveries WHERE campaign_id = $id AND state = 'sent'")
  python3 - "$WORK/worker.log" "$start" "$end" "$sent" "$leased" <<'PY'
import collections, datetime, sys
log, start, end, sent, leased = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
per = collections.Counter()
for line in open(log):
    if "connected to" not in line:
        continue
    t = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()
    per[int(t - start)] += 1
wall = end - start
print(f"max_leased {leased}: {sent} sent in {wall:.2f} s = {sent / wall:.0f} msg/s")
print("  msg/s by second (connections opened x 100): " +
      " ".join(str(per.get(s, 0) * 100) for s in range(int(wall) + 1)))
PY
done
