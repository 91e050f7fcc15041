#!/usr/bin/env bash
# Import throughput and memory: `mailer import` (no --mx-check) of a generated
# CSV (mixed providers, 5 % dirty rows) into a fresh database, beside
# `psql \copy` of the same file into a table with a unique index on
# lower(email), in the same run. Prints both times, the ratio (target <= 1.5)
# and mailer's peak RSS for 100,000 and 1,000,000 rows (target <= 150 MB, flat).
#
#   tests/bench/import.sh [ROWS] [BUILD_DIR]
#
# Needs the private cluster (deploy/pg-local.sh start) or MAILER_TEST_DATABASE_URL,
# and a built mailer in BUILD_DIR (default build).
set -euo pipefail

ROWS=${1:-1000000}
BUILD=${2:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MAILER="$BUILD/app/mailer"
[ -x "$MAILER" ] || { echo "import.sh: no $MAILER (build it first)" >&2; exit 2; }
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

# run_import LIST FILE -> prints "seconds rss_kb", the JSON summary into $WORK/LIST.json
run_import() {
  MAILER_DATABASE_URL=$URL "$MAILER" lists create "$1" >/dev/null 2>&1
  MAILER_DATABASE_URL=$URL /usr/bin/time -v -o "$WORK/$1.time" \
    "$MAILER" import --list "$1" "$2" --json >"$WORK/$1.json" 2>"$WORK/$1.err"
  local secs rss
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$WORK/$1.time")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/$1.time")
  echo "$secs $rss"
}

small=$(( ROWS / 10 ))
python3 "$ROOT/tests/bench/import_gen.py" "$small" "$WORK/small.csv"
python3 "$ROOT/tests/bench/import_gen.py" "$ROWS" "$WORK/big.csv"
echo "generated $small and $ROWS rows ($(du -h "$WORK/big.csv" | cut -f1))"

read -r small_secs small_rss < <(run_import small "$WORK/small.csv")
psql -q "$URL" -c "TRUNCATE list_members, recipients, domains, imports CASCADE" >/dev/null
read -r big_secs big_rss < <(run_import big "$WORK/big.csv")
echo "mailer import $ROWS rows: $(cat "$WORK/big.json")"

psql -q "$URL" -c "CREATE TABLE bench_copy (email text, first_name text, last_name text, city text);
                   CREATE UNIQUE INDEX ON bench_copy (lower(email));" >/dev/null
start=$(date +%s.%N)
psql -q "$URL" -c "\\copy bench_copy FROM '$WORK/big.csv' WITH (FORMAT csv, HEADER true)" >/dev/null
copy_secs=$(echo "$(date +%s.%N) - $start" | bc)

printf 'rows                 %d\n' "$ROWS"
printf 'mailer import        %.2f s\n' "$big_secs"
printf 'psql \\copy           %.2f s\n' "$copy_secs"
printf 'ratio                %.2f (target <= 1.5)\n' "$(echo "$big_secs / $copy_secs" | bc -l)"
printf 'peak RSS %7d rows %6.1f MB\n' "$small" "$(echo "$small_rss / 1024" | bc -l)"
printf 'peak RSS %7d rows %6.1f MB (target <= 150 MB, flat)\n' "$ROWS" "$(echo "$big_rss / 1024" | bc -l)"
# Where the time goes: CPU of mailer itself (the rest is the server's).
printf 'mailer CPU %7d rows %6.2f s user, %.2f s system\n' "$ROWS" \
  "$(awk -F': ' '/User time/ {print $2}' "$WORK/big.time")" \
  "$(awk -F': ' '/System time/ {print $2}' "$WORK/big.time")"
