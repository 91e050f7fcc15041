#!/usr/bin/env bash
# Import throughput and memory: `mailer import` (no --mx-check) of a generated
# CSV (mixed providers, 5 % dirty rows) into a fresh database, beside
# `psql \copy` of the same file into a table with a unique index on
# lower(email), in the same run. Prints each trial, the median times of both,
# their ratio (target <= 1.5) and mailer's peak RSS for ROWS/10 and ROWS rows
# (target <= 150 MB, flat).
#
# A fair reference: before every timed step both sides' tables are emptied
# and the server checkpoints and vacuums, so neither side starts with the
# other's dirty pages in the buffer pool or dead tuples in its tables; the
# two sides alternate which goes first from trial to trial; the figures
# compared are medians over the trials.
#
#   tests/bench/import.sh [ROWS] [BUILD_DIR] [TRIALS]
#     ROWS defaults to 1000000, BUILD_DIR to build, TRIALS to 3.
#
# Needs the private cluster (deploy/pg-local.sh start) or MAILER_TEST_DATABASE_URL
# (a role that may CHECKPOINT), and a built mailer in BUILD_DIR.
set -euo pipefail

ROWS=${1:-1000000}
BUILD=${2:-build}
TRIALS=${3:-3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MAILER="$BUILD/app/mailer"
[ -x "$MAILER" ] || { echo "import.sh: no $MAILER (build it first)" >&2; exit 2; }
[ "$TRIALS" -ge 1 ] 2>/dev/null || { echo "import.sh: TRIALS must be a positive number" >&2; exit 2; }
[ -x /usr/bin/time ] || "$ROOT/deploy/install-deps.sh"
SERVER=${MAILER_TEST_DATABASE_URL:-$("$ROOT/deploy/pg-local.sh" url)}
DB=mailer_bench_import_$$
WORK=$(mktemp -d)
url_for() { python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$SERVER" "$1"; }
URL=$(url_for "$DB")
ADMIN=$(url_for postgres)
cleanup() { psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

psql -q "$ADMIN" -c "CREATE DATABASE $DB" >/dev/null
MAILER_DATABASE_URL=$URL "$MAILER" migrate >/dev/null 2>&1

# Empties both sides' tables, then flushes the buffer pool's dirty pages and
# vacuums, so that the next timed step starts from the same server state.
settle() {
  PGOPTIONS="-c client_min_messages=warning" psql -q "$URL" \
    -c "TRUNCATE list_members, recipients, domains, imports CASCADE" \
    -c "DROP TABLE IF EXISTS bench_copy" \
    -c "CREATE TABLE bench_copy (email text, first_name text, last_name text, city text)" \
    -c "CREATE UNIQUE INDEX ON bench_copy (lower(email))" \
    -c "CHECKPOINT" -c "VACUUM ANALYZE" >/dev/null
}

# run_import LIST FILE -> prints "seconds rss_kb"; the JSON summary in $WORK/LIST.json
run_import() {
  MAILER_DATABASE_URL=$URL "$MAILER" lists create "$1" >/dev/null 2>&1
  MAILER_DATABASE_URL=$URL /usr/bin/time -v -o "$WORK/$1.time" \
    "$MAILER" import --list "$1" "$2" --json >"$WORK/$1.json" 2>"$WORK/$1.err"
  local secs rss
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$WORK/$1.time")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/$1.time")
  echo "$secs $rss"
}

# run_copy FILE -> prints seconds
run_copy() {
  local start
  start=$(date +%s.%N)
  psql -q "$URL" -c "\\copy bench_copy FROM '$1' WITH (FORMAT csv, HEADER true)" >/dev/null
  echo "$(date +%s.%N) - $start" | bc
}

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

small=$(( ROWS / 10 ))
python3 "$ROOT/tests/bench/import_gen.py" "$small" "$WORK/small.csv"
python3 "$ROOT/tests/bench/import_gen.py" "$ROWS" "$WORK/big.csv"
echo "generated $small and $ROWS rows ($(du -h "$WORK/big.csv" | cut -f1)), $TRIALS trials"

settle
read -r small_secs small_rss < <(run_import small "$WORK/small.csv")

mailer_times=() copy_times=() big_rss=0
for trial in $(seq 1 "$TRIALS"); do
  # Odd trials: mailer first; even trials: psql \copy first.
  order=(mailer copy)
  [ $((trial % 2)) = 0 ] && order=(copy mailer)
  for side in "${order[@]}"; do
    settle
    if [ "$side" = mailer ]; then
      read -r secs rss < <(run_import "big$trial" "$WORK/big.csv")
      mailer_times+=("$secs")
      [ "$rss" -gt "$big_rss" ] && big_rss=$rss
      cp "$WORK/big$trial.time" "$WORK/big.time"
    else
      secs=$(run_copy "$WORK/big.csv")
      copy_times+=("$secs")
    fi
    printf 'trial %d  %-14s %8.2f s\n' "$trial" "$([ "$side" = mailer ] && echo "mailer import" || echo 'psql \copy')" "$secs"
  done
done
echo "mailer import $ROWS rows: $(cat "$WORK/big$TRIALS.json")"
mailer_secs=$(median "${mailer_times[@]}")
copy_secs=$(median "${copy_times[@]}")

printf 'rows                 %d\n' "$ROWS"
printf 'mailer import        %.2f s (median of %d)\n' "$mailer_secs" "$TRIALS"
printf 'psql \\copy           %.2f s (median of %d)\n' "$copy_secs" "$TRIALS"
printf 'ratio                %.2f (target <= 1.5)\n' "$(echo "$mailer_secs / $copy_secs" | bc -l)"
printf 'peak RSS %7d rows %6.1f MB\n' "$small" "$(echo "$small_rss / 1024" | bc -l)"
printf 'peak RSS %7d rows %6.1f MB (target <= 150 MB, flat)\n' "$ROWS" "$(echo "$big_rss / 1024" | bc -l)"
# Where the time goes: CPU of mailer itself in the last trial (the rest is the server's).
printf 'mailer CPU %7d rows %6.2f s user, %.2f s system\n' "$ROWS" \
  "$(awk -F': ' '/User time/ {print $2}' "$WORK/big.time")" \
  "$(awk -F': ' '/System time/ {print $2}' "$WORK/big.time")"
