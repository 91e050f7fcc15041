#!/usr/bin/env bash
# Delivery queue round trip: claim -> null transport -> outcome write, for a
# campaign of N deliveries (default 1,000,000) over four providers, with one
# worker and then two. Runs on a throwaway PostgreSQL cluster (same settings as
# deploy/pg-local.sh), so nothing else shares its CPU figures.
#
#   tests/bench/queue.sh [DELIVERIES] [BUILD_DIR]
#
# BUILD_DIR (default build) must hold a built `mailer`. Prints, per run,
# deliveries per second, and the CPU seconds of the PostgreSQL processes and
# of the workers with PostgreSQL's share of the total.
set -euo pipefail

N=${1:-1000000}
BUILD=${2:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MAILER=$(cd "$BUILD" && pwd)/app/mailer
WORK=$(mktemp -d)
chmod 755 "$WORK"
export MAILER_PG_DIR=$WORK/pg
cleanup() { "$ROOT/deploy/pg-local.sh" destroy >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

URL=$("$ROOT/deploy/pg-local.sh" start)
DATADIR=$MAILER_PG_DIR/data
[ -f "$MAILER_PG_DIR/datadir" ] && DATADIR=$(cat "$MAILER_PG_DIR/datadir")
POSTMASTER=$(head -n 1 "$DATADIR/postmaster.pid")
export MAILER_DATABASE_URL=$URL

cat > "$WORK/mailer.toml" <<TOML
[worker]
claim_batch = 2000
max_leased = 16000
flush_batch = 8000
flush_interval = "250ms"
tick = "1s"
TOML
M() { "$MAILER" --config "$WORK/mailer.toml" --log-level warn "$@"; }

M migrate >/dev/null
t0=$(date +%s.%N)
psql "$URL" -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO domains (domain, provider) VALUES ('gmail.com', 'gmail'), ('outlook.com', 'outlook'),
  ('yahoo.com', 'yahoo'), ('example.org', 'other:example.org');
INSERT INTO lists (name) VALUES ('bench');
INSERT INTO recipients (email, email_key, domain, attributes)
  SELECT 'reader' || i || '@' || d, 'reader' || i || '@' || d, d, jsonb_build_object('first_name', 'Reader ' || i)
  FROM generate_series(1, $N) i,
       LATERAL (SELECT (ARRAY['gmail.com','outlook.com','yahoo.com','example.org'])[1 + i % 4] AS d) x;
INSERT INTO list_members (list_id, recipient_id) SELECT 1, id FROM recipients;
VACUUM ANALYZE;
SQL
t1=$(date +%s.%N)
echo "seeded $N recipients in $(python3 -c "print(round($t1-$t0,1))")s"
printf 'Hello {{first_name}}\n' > "$WORK/body.txt"

run() {  # run WORKERS: one campaign of N deliveries sent by WORKERS null-transport workers
  local workers=$1 id f0 f1 out
  id=$(M campaign create --name "bench-$workers" --list bench --from 'Bench <bench@example.com>' \
         --subject 'Hi {{first_name}}' --text "$WORK/body.txt" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  f0=$(date +%s.%N)
  M campaign start "$id" 2>/dev/null
  f1=$(date +%s.%N)
  psql "$URL" -q -c "VACUUM ANALYZE deliveries"
  local cmd="pids=(); for w in \$(seq $workers); do \"$MAILER\" --config \"$WORK/mailer.toml\" --log-level warn run --worker-id bench\$w --until-idle --campaign $id --transport null 2>>\"$WORK/worker.err\" & pids+=(\$!); done; rc=0; for p in \${pids[@]}; do wait \$p || rc=1; done; exit \$rc"
  out=$(python3 "$ROOT/tests/bench/queue_cpu.py" "$POSTMASTER" -- bash -c "$cmd")
  local sent
  sent=$(psql "$URL" -qtAc "SELECT count(*) FROM deliveries WHERE campaign_id = $id AND state = 'sent'")
  python3 - "$out" "$sent" "$workers" "$N" "$f0" "$f1" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); sent = int(sys.argv[2]); workers = int(sys.argv[3]); n = int(sys.argv[4])
freeze = float(sys.argv[6]) - float(sys.argv[5])
total = r["postgres_cpu_s"] + r["worker_cpu_s"]
print(f"{workers} worker(s): {sent}/{n} sent in {r['wall_s']:.1f}s = {sent / r['wall_s']:,.0f} deliveries/s; "
      f"CPU postgres {r['postgres_cpu_s']:.1f}s, workers {r['worker_cpu_s']:.1f}s, "
      f"database share {100 * r['postgres_cpu_s'] / total:.0f}%; audience freeze {freeze:.1f}s")
PY
}

run 1
run 2
if [ -s "$WORK/worker.err" ]; then echo "worker stderr:"; tail -n 5 "$WORK/worker.err"; fi
