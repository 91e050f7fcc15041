#!/usr/bin/env bash
# Many connections at once through `mailer run`: DOMAINS recipient domains
# (each its own provider key, other:DOMAIN, with the default 20 connections)
# routed ([routes] other) to a `mailer sink --latency` peer answering the final "." after
# LATENCY_MS, so that DOMAINS x 20 connections are open together (1,000 by
# default). Prints the accepted rate beside connections / latency, the steady
# rate once every connection is busy, and the worker's peak RSS
# (/usr/bin/time -v) beside the 150 MB budget. Default throttle
# configuration; STARTTLS required and verified against a throwaway test CA
# unless TLS=off. Bounded: RECIPIENTS messages and TIME_LIMIT seconds.
#
#   [TLS=on|off] [TIME_LIMIT=300] tests/bench/run_connections.sh \
#     [RECIPIENTS] [DOMAINS] [LATENCY_MS] [BUILD_DIR]
#
# Needs the private cluster: deploy/pg-local.sh start.
set -euo pipefail

N=${1:-15000}
D=${2:-50}
L=${3:-2000}
BUILD=${4:-build/release}
TLS=${TLS:-on}
TIME_LIMIT=${TIME_LIMIT:-300}
CONNS_PER_DOMAIN=20 # [providers.*] max_connections default
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/bench/bench_env.sh
source "$ROOT/tests/bench/bench_env.sh"
mailer="$ROOT/$BUILD/app/mailer"
bench_env "bench-conn-$$"

port=$(free_port)
"$mailer" sink --listen "127.0.0.1:$port" --latency "${L}ms" --json --report-every 0ms \
  "${tls_sink[@]}" >"$WORK/sink.json" 2>"$WORK/sink.log" &
pids+=($!)
for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

head -c 32 /dev/urandom | base64 >"$WORK/secret"
cat >"$WORK/mailer.toml" <<TOML
[sender]
helo_name = "bench.localhost"
egress = "$EGRESS"
$tls_sender
[routes]
other = "smtp://127.0.0.1:$port"
[unsubscribe]
base_url = "http://127.0.0.1:1"
secret_file = "$WORK/secret"
TOML
export MAILER_CONFIG="$WORK/mailer.toml"
export MAILER_DATABASE_URL="${MAILER_DATABASE_URL:-$(bash "$ROOT/deploy/pg-local.sh" url)}"
"$mailer" migrate >/dev/null

python3 - "$WORK/list.csv" "$N" "$D" <<'PY'
import sys
n, d = int(sys.argv[2]), int(sys.argv[3])
with open(sys.argv[1], "w") as f:
    f.write("email,first_name\n")
    for i in range(n):
        f.write(f"reader{i}@d{i % d}.bench.example,U{i}\n")
PY
list="bench-conn-$(date +%s%N)"
"$mailer" lists create "$list" >/dev/null
"$mailer" import --list "$list" "$WORK/list.csv" --json >/dev/null
printf 'Hello {{first_name}},\n\nA benchmark message.\n' >"$WORK/body.txt"
id=$("$mailer" campaign create --name "$list" --list "$list" --from "Bench <news@bench.localhost>" \
  --subject "Bench" --text "$WORK/body.txt" --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"$mailer" campaign start "$id" >/dev/null
start=$(date +%s.%N)
status=0
timeout --signal=TERM "$TIME_LIMIT" /usr/bin/time -v -o "$WORK/time.txt" \
  "$mailer" run --campaign "$id" --until-idle --worker-id "bench-$id" 2>"$WORK/run.log" || status=$?
end=$(date +%s.%N)
if [ "$status" -ne 0 ]; then
  echo "mailer run exited $status (time limit ${TIME_LIMIT}s); log tail:"
  tail -5 "$WORK/run.log"
fi
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
sent=$("$mailer" campaign show "$id" --json | python3 -c 'import json,sys; c=json.load(sys.stdin); print(c.get("counts", c).get("sent", 0))')
# Steady: sends between 20 % and 95 % of the total, by sent_at (every
# connection is busy after the first reply time).
steady=$(psql "$MAILER_DATABASE_URL" -Atc "
  WITH s AS (SELECT sent_at, row_number() OVER (ORDER BY sent_at) AS n, count(*) OVER () AS total
             FROM deliveries WHERE campaign_id = $id AND state = 'sent')
  SELECT (max(n) - min(n))::float8 / greatest(extract(epoch FROM max(sent_at) - min(sent_at))::float8, 0.001)
  FROM s WHERE n BETWEEN ceil(total * 0.20) AND floor(total * 0.95)")
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
read -r conns tls_sessions < <(python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
print(sum(r["connections"] for r in rows), sum(r.get("tls_sessions", 0) for r in rows))' <"$WORK/sink.json")
python3 - "$sent" "$start" "$end" "$L" "$D" "$CONNS_PER_DOMAIN" "$steady" "$rss_kb" "$TLS" "$conns" "$tls_sessions" <<'PY'
import sys
sent, start, end, lat = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
domains, per, steady, rss_kb = int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7] or 0), int(sys.argv[8])
tls, conns, tls_sessions = sys.argv[9], sys.argv[10], sys.argv[11]
c = domains * per
took = end - start
rate = sent / took
ceiling = c / (lat / 1000.0)
print(f"{domains} domains x {per} connections = {c}, latency {lat:.0f} ms, TLS {tls} "
      f"({tls_sessions} TLS sessions over {conns} connections at the sinks)")
print(f"  whole run: sent {sent} in {took:.1f} s: {rate:.1f} msg/s; connections/latency = "
      f"{c}/{lat/1000:.3f} s = {ceiling:.0f} msg/s; ratio {rate / ceiling:.2f}")
print(f"  steady (20-95 % of sends): {steady:.1f} msg/s; ratio {steady / ceiling:.2f}")
print(f"  worker peak RSS {rss_kb / 1024:.1f} MB (budget 150 MB): {'ok' if rss_kb <= 150 * 1024 else 'OVER'}")
PY
