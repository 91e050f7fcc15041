#!/usr/bin/env bash
# The quickstart: on a fresh Debian 12 machine, installs dependencies, builds
# mailer, starts a private PostgreSQL and simulated providers (rehearsal SMTP
# sinks for gmail, yahoo and outlook with modest hidden capacities, plus a
# generic one), imports a sample list with realistic dirty rows, runs a
# campaign to completion with the web endpoint up, feeds a few bounces and a
# complaint about its sends to `mailer inbound` over SMTP, and prints a
# report.
# Everything listens on loopback only. Re-running it starts a new campaign.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
work="$repo/.mailer/quickstart"
mkdir -p "$work"

step() { printf '\n== %s\n' "$*"; }

step "dependencies"
bash deploy/install-deps.sh

step "build"
if [ -n "${MAILER_BIN:-}" ]; then
  # A binary built already (the test command checks the quickstart this way).
  mailer=$(cd "$(dirname "$MAILER_BIN")" && pwd)/$(basename "$MAILER_BIN")
  echo "using $mailer"
else
  cmake -S . -B build/quickstart -G Ninja -DCMAKE_BUILD_TYPE=Release -DMAILER_TESTS=OFF \
    >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; exit 1; }
  cmake --build build/quickstart -j"$(nproc)" --target mailer
  mailer="$repo/build/quickstart/app/mailer"
fi

step "private PostgreSQL"
export MAILER_DATABASE_URL="${MAILER_DATABASE_URL:-$(bash deploy/pg-local.sh start)}"
echo "database: $MAILER_DATABASE_URL"
"$mailer" migrate

pids=()
# Stops the sinks. Only they are waited for: `mailer serve` stays up on
# purpose, and a bare `wait` would wait for it forever.
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ ${#pids[@]} -eq 0 ] || wait "${pids[@]}" 2>/dev/null || true
}
trap cleanup EXIT

# unavailable CMD...: true when this build reports the command as not yet available.
unavailable() { "$mailer" "$@" --help 2>&1 | grep -q "not yet available"; }

# listening_port LOG PID WHAT: every peer below listens on port 0, so the
# kernel picks a free port and no other process can take it between a pick
# and the bind; this waits (up to 10 s) for the peer's "listening on
# ADDR:PORT" line in LOG and prints PORT, or fails if the peer exits first.
listening_port() {
  local log=$1 pid=$2 what=$3 line
  for _ in $(seq 100); do
    line=$(grep -m1 -oE "${4:-listening on} [^ ]*:[0-9]+" "$log" 2>/dev/null || true)
    if [ -n "$line" ]; then
      echo "${line##*:}"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$what did not start:" >&2
  cat "$log" >&2
  return 1
}

step "simulated providers"
if unavailable sink; then
  echo "mailer sink is not yet available in this build; the quickstart stops here."
  exit 0
fi
# Capacities low enough that the sample campaign runs into them: the report
# then shows deferrals and the rates the throttle settled at.
declare -A port capacity=([gmail]=80 [yahoo]=30 [outlook]=50 [generic]=100)
for p in gmail yahoo outlook generic; do
  # Yahoo's penalty box lasts hours for real; 15 s here shows the suspension
  # and the careful restart within the run.
  extra=()
  [ "$p" = yahoo ] && extra=(--penalty-box 15s)
  # The gmail sink keeps what it accepts: the reports fed to `mailer inbound`
  # after the campaign are built from those messages.
  [ "$p" = gmail ] && { rm -rf "$work/maildir"; extra+=(--maildir "$work/maildir"); }
  "$mailer" sink --listen "127.0.0.1:0" --profile "$p" --capacity "${capacity[$p]}" \
    "${extra[@]}" 2>"$work/sink-$p.log" &
  pids+=($!)
  port[$p]=$(listening_port "$work/sink-$p.log" $! "the $p sink")
  echo "$p: 127.0.0.1:${port[$p]} (hidden capacity ${capacity[$p]}/s)"
done

[ -f "$work/unsubscribe.key" ] || head -c 32 /dev/urandom | base64 >"$work/unsubscribe.key"
# `mailer serve` and `mailer inbound` listen on port 0 as well: the ports
# they get are read from their logs when they start, and the public one is
# then written into [unsubscribe] base_url.
cat >"$work/mailer.toml" <<TOML
# Written by deploy/quickstart.sh: every provider routed to a local sink.
[sender]
helo_name = "quickstart.localhost"
verp_domain = "bounces.quickstart.localhost"
default_route = "smtp://127.0.0.1:${port[generic]}"

[routes]
gmail = "smtp://127.0.0.1:${port[gmail]}"
yahoo = "smtp://127.0.0.1:${port[yahoo]}"
outlook = "smtp://127.0.0.1:${port[outlook]}"
other = "smtp://127.0.0.1:${port[generic]}"

[providers.gmail]
initial_rate = 15
[providers.yahoo]
initial_rate = 6
suspend_for = "20s"
[providers.outlook]
initial_rate = 10
[providers.other]
initial_rate = 20

[retry]
min_backoff = "2s"
max_backoff = "30s"
max_age = "1h"

[unsubscribe]
base_url = "http://127.0.0.1:0"
secret_file = "$work/unsubscribe.key"

# The dashboard and /metrics are on the operator listener, apart from the
# public one that serves unsubscribe links.
[http]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[inbound]
listen = "127.0.0.1:0"
TOML
export MAILER_CONFIG="$work/mailer.toml"

step "import the sample list"
python3 deploy/sample/make-list.py "$work/recipients.csv" 3000
for cmd in lists import campaign run; do
  if unavailable $cmd; then
    echo "mailer $cmd is not yet available in this build; the quickstart stops here."
    exit 0
  fi
done
"$mailer" lists create quickstart 2>/dev/null || true
"$mailer" import --list quickstart "$work/recipients.csv" --rejects "$work/rejects.csv" --json |
  tee "$work/import.json"

if ! unavailable serve; then
  step "web endpoint"
  # Left running after this script ends, so the dashboard stays up; a re-run
  # replaces it.
  if [ -f "$work/serve.pid" ]; then kill "$(cat "$work/serve.pid")" 2>/dev/null || true; fi
  nohup "$mailer" serve >"$work/serve.log" 2>&1 &
  echo $! >"$work/serve.pid"
  http_port=$(listening_port "$work/serve.log" "$(cat "$work/serve.pid")" "mailer serve")
  admin_port=$(listening_port "$work/serve.log" "$(cat "$work/serve.pid")" "mailer serve" \
    "admin pages on")
  sed -i "s|^base_url = \"http://127.0.0.1:0\"|base_url = \"http://127.0.0.1:$http_port\"|" \
    "$work/mailer.toml"
  echo "dashboard: http://127.0.0.1:$admin_port/"
fi

step "campaign"
id=$("$mailer" campaign create --name "quickstart $(date +%H:%M:%S)" --list quickstart \
  --from "Quickstart <news@quickstart.localhost>" --subject "Hello {{first_name|there}}" \
  --text deploy/sample/campaign.txt --html deploy/sample/campaign.html --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
# Suppressions as the campaign starts: the reports fed in below suppress more
# addresses afterwards, and those were sent to.
"$mailer" lists show quickstart --json >"$work/list-before.json"
"$mailer" campaign start "$id"
"$mailer" run --campaign "$id" --until-idle --worker-id quickstart

if ! unavailable inbound; then
  step "bounces and a complaint over SMTP"
  # `mailer inbound` for bounces.quickstart.localhost; the reports are about
  # this campaign's own sends (their VERP return paths and quoted headers).
  "$mailer" inbound 2>"$work/inbound.log" &
  pids+=($!)
  inbound_port=$(listening_port "$work/inbound.log" $! "mailer inbound")
  echo "inbound: 127.0.0.1:$inbound_port"
  python3 deploy/sample/feed-reports.py "$work/maildir" "$inbound_port" \
    fbl@bounces.quickstart.localhost || { cat "$work/inbound.log"; exit 1; }
fi

step "report"
"$mailer" campaign show "$id" --json | python3 -c '
import json, sys
c = json.load(sys.stdin)
print("campaign %s: %s" % (c["id"], c["status"]))
print("  " + ", ".join("%s %d" % kv for kv in c["counts"].items()))
f = c.get("feedback")
if f:
    print("  feedback: " + ", ".join("%s %d" % kv for kv in f.items()))
' 
# Per provider: deliveries sent, deferrals suffered on the way (attempts
# beyond the final one), and the rate the throttle learned.
psql "$MAILER_DATABASE_URL" -qtA -F $'\t' -c "
  SELECT d.provider,
         count(*) FILTER (WHERE d.state = 'sent'),
         coalesce(sum(d.attempts), 0) - count(*) FILTER (WHERE d.state IN ('sent', 'bounced', 'failed')),
         coalesce(max(t.rate), 0), coalesce(max(t.mode), '-')
  FROM deliveries d LEFT JOIN throttle_state t ON t.provider = d.provider
  WHERE d.campaign_id = $id GROUP BY d.provider ORDER BY d.provider" |
  while IFS=$'\t' read -r provider sent deferred rate mode; do
    printf '  %-22s sent %5d  deferred %4d  final rate %6.1f/s (%s)\n' "$provider" "$sent" "$deferred" "$rate" "$mode"
  done
python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print("import: %d rows, %d imported, %d duplicates" % (r["rows"], r["imported"], r["duplicates"]))
print("  rejected: " + ", ".join("%s %d" % kv for kv in sorted(r["rejected"].items()) if kv[1]))
' "$work/import.json"
echo "rejects file: $work/rejects.csv"

# One line for tests/run.sh to check: every sendable member sent, deferrals
# suffered, rates learned, and /healthz answering 200 from the serve started
# above (polled: it may still be connecting to the database).
healthz=none
if ! unavailable serve; then
  healthz=$(python3 - "http://127.0.0.1:$http_port/healthz" <<'PY'
import sys, time, urllib.request, urllib.error
code, deadline = "none", time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        code = urllib.request.urlopen(sys.argv[1], timeout=5).status
    except urllib.error.HTTPError as e:
        code = e.code
    except OSError:
        pass
    if code == 200:
        break
    time.sleep(0.2)
print(code)
PY
)
fi
"$mailer" campaign show "$id" --json >"$work/campaign.json"
"$mailer" lists show quickstart --json >"$work/list.json"
deferrals=$(psql "$MAILER_DATABASE_URL" -qtA -c "
  SELECT coalesce(sum(attempts), 0) - count(*) FILTER (WHERE state IN ('sent', 'bounced', 'failed'))
  FROM deliveries WHERE campaign_id = $id")
python3 - "$work/campaign.json" "$work/list.json" "$work/import.json" "$work/list-before.json" \
  "$deferrals" "$healthz" <<'PY'
import json, sys
c, l, i, b = (json.load(open(f)) for f in sys.argv[1:5])
print("quickstart-check: " + json.dumps({
    "campaign": c["id"], "status": c["status"], "counts": c["counts"], "imported": i["imported"],
    "members": l["members"], "suppressed": b["suppressed"], "suppressed_after": l["suppressed"],
    "deferrals": int(sys.argv[5]),
    "learned_rates": {p: v["rate"] for p, v in c["providers"].items() if v.get("learned")},
    "healthz": sys.argv[6]}, sort_keys=True))
PY
if ! unavailable serve; then
  echo "dashboard: http://127.0.0.1:$admin_port/ (stop it with: kill \$(cat $work/serve.pid))"
fi
