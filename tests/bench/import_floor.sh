#!/usr/bin/env bash
# The floor of the import's database writes: COPY of ready rows straight into
# recipients, in the import's order, and the memberships made from their id
# range as the import makes them (no lookup, no hygiene, no merge), beside
# `psql \copy` of the same generated CSV into a table with a unique index on
# lower(email), in the same run. Whatever the import does on top of this is
# its own cost; this tells how close a single write stream can get to the
# import benchmark's reference.
#
#   tests/bench/import_floor.sh [ROWS] [BUILD_DIR]
#
# Needs the private cluster (deploy/pg-local.sh start) or MAILER_TEST_DATABASE_URL,
# and a built mailer in BUILD_DIR (default build) for the schema.
set -euo pipefail

ROWS=${1:-1000000}
BUILD=${2:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MAILER="$BUILD/app/mailer"
[ -x "$MAILER" ] || { echo "import_floor.sh: no $MAILER (build it first)" >&2; exit 2; }
SERVER=${MAILER_TEST_DATABASE_URL:-$("$ROOT/deploy/pg-local.sh" url)}
DB=mailer_bench_floor_$$
WORK=$(mktemp -d)
url_for() { python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$SERVER" "$1"; }
URL=$(url_for "$DB")
ADMIN=$(url_for postgres)
cleanup() { psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

psql -q "$ADMIN" -c "CREATE DATABASE $DB" >/dev/null
MAILER_DATABASE_URL=$URL "$MAILER" migrate >/dev/null 2>&1
python3 "$ROOT/tests/bench/import_gen.py" "$ROWS" "$WORK/big.csv"

# The rows the import would write, ready for COPY in the text format the import
# uses: first of each address only, in the import's order (each chunk of
# 25,000 input rows sorted by key, ids drawn in that order).
python3 - "$WORK" <<'PY'
import csv, json, sys
w = sys.argv[1]
seen = set()
n = 0
chunk = []
def field(text):  # COPY text format, as the import sends it
    return (text.replace("\\", "\\\\").replace("\t", "\\t")
            .replace("\n", "\\n").replace("\r", "\\r"))
with open(w + "/big.csv", newline="") as f, open(w + "/rec.txt", "w") as r:
    rows = csv.reader(f)
    next(rows)
    def flush():
        global n
        for key, row in sorted(chunk):
            n += 1
            attrs = {"first_name": row[1], "last_name": row[2], "city": row[3]}
            r.write("\t".join([str(n), field(row[0]), field(key),
                               field(row[0].split("@", 1)[1].lower()),
                               field(json.dumps(attrs, ensure_ascii=False))]) + "\n")
        chunk.clear()
    for i, row in enumerate(rows):
        if i and i % 25000 == 0:
            flush()
        if len(row) != 4 or "@" not in row[0]:
            continue
        key = row[0].lower()
        if key in seen:
            continue
        seen.add(key)
        chunk.append((key, row))
    flush()
with open(w + "/count", "w") as c:
    c.write(str(n))
PY

timed() {  # timed LABEL SQL; leaves the seconds in $last
  local s
  s=$(date +%s.%N)
  psql -q "$URL" -c "$2" >/dev/null
  last=$(echo "$(date +%s.%N) - $s" | bc)
  printf '%-44s %6.2f s\n' "$1" "$last"
}
psql -q "$URL" -c "CREATE TABLE bench_copy (email text, first_name text, last_name text, city text);
                   CREATE UNIQUE INDEX ON bench_copy (lower(email));
                   INSERT INTO lists (id, name) VALUES (1, 'floor');" >/dev/null
echo "rows $ROWS"
timed "psql \\copy (reference)" "\\copy bench_copy FROM '$WORK/big.csv' WITH (FORMAT csv, HEADER true)"
reference=$last
timed "COPY ready rows into recipients" \
  "\\copy recipients (id, email, email_key, domain, attributes) FROM '$WORK/rec.txt'"
recipients=$last
timed "memberships by id range into list_members" \
  "INSERT INTO list_members (list_id, recipient_id) SELECT 1, generate_series(1, $(cat "$WORK/count"))"
floor=$(echo "$recipients + $last" | bc)
printf '%-44s %6.2f s\n' "floor (both writes)" "$floor"
printf '%-44s %6.2f\n' "floor / reference" "$(echo "$floor / $reference" | bc -l)"
