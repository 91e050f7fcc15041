#!/usr/bin/env bash
# The worker against slow providers: four `mailer sink --latency` peers (one
# per provider family), each answering the final "." after LATENCY_MS, and
# `mailer run --until-idle` sending a campaign of N recipients spread evenly
# over them. Each provider allows its default 20 connections, so the ceiling
# is 80 / (LATENCY + envelope round trip). Prints the accepted rate beside
# connections / latency, and the steady rate after the ramp (the sends
# between 40 % and 95 % of the total, by their sent_at) beside it.
#
#   [TLS=on|off] tests/bench/run_latency.sh [RECIPIENTS] [LATENCY_MS] [INITIAL_RATE] [BUILD_DIR]
#
# INITIAL_RATE (default 1000) is each provider's starting rate, so that the
# pacer does not bound the run and the connections do; "default" keeps the
# shipped throttle configuration, and the run then includes the AIMD ramp.
# TLS=on (the default): the sinks offer STARTTLS with a throwaway test
# certificate, and the sender requires it and verifies it against the test
# CA ([sender] starttls = "required", ca_file). TLS=off: plain text.
# Needs the private cluster: deploy/pg-local.sh start.
set -euo pipefail

N=${1:-8000}
L=${2:-250}
RATE=${3:-1000}
BUILD=${4:-build/release}
TLS=${TLS:-on}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/bench/bench_env.sh
source "$ROOT/tests/bench/bench_env.sh"
mailer="$ROOT/$BUILD/app/mailer"
bench_env "bench-$$"

declare -A port
for p in gmail yahoo outlook generic; do
  port[$p]=$(free_port)
  "$mailer" sink --listen "127.0.0.1:${port[$p]}" --latency "${L}ms" --json "${tls_sink[@]}" \
    >"$WORK/sink-$p.json" 2>"$WORK/sink-$p.log" &
  pids+=($!)
  for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/${port[$p]}") 2>/dev/null && break; sleep 0.1; done
done

head -c 32 /dev/urandom | base64 >"$WORK/secret"
rates=""
if [ "$RATE" != default ]; then
  for p in gmail yahoo outlook other; do
    rates+=$'\n'"[providers.$p]"$'\n'"initial_rate = $RATE"$'\n'"max_rate = $RATE"
  done
fi
cat >"$WORK/mailer.toml" <<TOML
[sender]
helo_name = "bench.localhost"
# Its own throttle key, so the learned rates of a run stay out of other work.
egress = "$EGRESS"
$tls_sender
[routes]
gmail = "smtp://127.0.0.1:${port[gmail]}"
yahoo = "smtp://127.0.0.1:${port[yahoo]}"
outlook = "smtp://127.0.0.1:${port[outlook]}"
other = "smtp://127.0.0.1:${port[generic]}"
[unsubscribe]
base_url = "http://127.0.0.1:1"
secret_file = "$WORK/secret"
$rates
TOML
export MAILER_CONFIG="$WORK/mailer.toml"
export MAILER_DATABASE_URL="${MAILER_DATABASE_URL:-$(bash "$ROOT/deploy/pg-local.sh" url)}"
"$mailer" migrate >/dev/null

python3 - "$WORK/list.csv" "$N" <<'PY'
import sys
domains = ["gmail.com", "outlook.com", "yahoo.com", "bench-other.example"]
with open(sys.argv[1], "w") as f:
    f.write("email,first_name\n")
    for i in range(int(sys.argv[2])):
        f.write(f"reader{i}@{domains[i % 4]},U{i}\n")
PY
list="bench-$(date +%s%N)"
"$mailer" lists create "$list" >/dev/null
"$mailer" import --list "$list" "$WORK/list.csv" --json >/dev/null
printf 'Hello {{first_name}},\n\nA benchmark message.\n' >"$WORK/body.txt"
id=$("$mailer" campaign create --name "$list" --list "$list" --from "Bench <news@bench.localhost>" \
  --subject "Bench" --text "$WORK/body.txt" --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"$mailer" campaign start "$id" >/dev/null
start=$(date +%s.%N)
"$mailer" run --campaign "$id" --until-idle --worker-id "bench-$id" 2>"$WORK/run.log"
end=$(date +%s.%N)
sent=$("$mailer" campaign show "$id" --json | python3 -c 'import json,sys; c=json.load(sys.stdin); print(c.get("counts", c).get("sent", 0))')
# The steady rate: sends between 40 % and 95 % of the total, by sent_at (the
# ramp is over by 40 % of a run of this length; the last 5 % is the tail).
steady=$(psql "$MAILER_DATABASE_URL" -Atc "
  WITH s AS (SELECT sent_at, row_number() OVER (ORDER BY sent_at) AS n, count(*) OVER () AS total
             FROM deliveries WHERE campaign_id = $id AND state = 'sent')
  SELECT (max(n) - min(n))::float8 / greatest(extract(epoch FROM max(sent_at) - min(sent_at))::float8, 0.001)
  FROM s WHERE n BETWEEN ceil(total * 0.40) AND floor(total * 0.95)")
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
tls_sessions=$(cat "$WORK"/sink-*.json | python3 -c 'import json,sys; print(sum(json.loads(l).get("tls_sessions", 0) for l in sys.stdin if l.strip()))')
connections=$(cat "$WORK"/sink-*.json | python3 -c 'import json,sys; print(sum(json.loads(l)["connections"] for l in sys.stdin if l.strip()))')
python3 - "$sent" "$start" "$end" "$L" "$steady" "$RATE" "$TLS" "$connections" "$tls_sessions" <<'PY'
import sys
sent, start, end, lat = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
steady, rate_cfg, tls, conns, tls_sessions = float(sys.argv[5] or 0), sys.argv[6], sys.argv[7], sys.argv[8], sys.argv[9]
took = end - start
rate = sent / took
ceiling = 80 / (lat / 1000.0)
print(f"latency {lat:.0f} ms, initial rate {rate_cfg}, TLS {tls} ({tls_sessions} TLS sessions over {conns} connections)")
print(f"  whole run: sent {sent} in {took:.1f} s: {rate:.1f} msg/s; connections/latency = 80/{lat/1000:.3f} s = "
      f"{ceiling:.0f} msg/s; ratio {rate / ceiling:.2f}")
print(f"  steady (40-95 % of sends): {steady:.1f} msg/s; ratio {steady / ceiling:.2f}")
PY
