#!/usr/bin/env bash
# The floor of the import's database writes: COPY of ready rows straight into
# recipients and list_members (no lookup, no hygiene, no merge), beside
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

# The rows the import would write, ready for COPY: first of each address only.
python3 - "$WORK" <<'PY'
import csv, json, sys
w = sys.argv[1]
seen = set()
n = 0
with open(w + "/big.csv", newline="") as f, open(w + "/rec.csv", "w", newline="") as r, \
        open(w + "/mem.csv", "w") as m:
    rows = csv.reader(f)
    next(rows)
    out = csv.writer(r)
    for row in rows:
        if len(row) != 4 or "@" not in row[0]:
            continue
        key = row[0].lower()
        if key in seen:
            continue
        seen.add(key)
        n += 1
        attrs = {"first_name": row[1], "last_name": row[2], "city": row[3]}
        out.writerow([n, row[0], key, row[0].split("@", 1)[1].lower(),
                      json.dumps(attrs, ensure_ascii=False)])
        m.write(f"1,{n}\n")
PY

timed() {  # timed LABEL SQL
  local s
  s=$(date +%s.%N)
  psql -q "$URL" -c "$2" >/dev/null
  printf '%-44s %6.2f s\n' "$1" "$(echo "$(date +%s.%N) - $s" | bc)"
}
psql -q "$URL" -c "CREATE TABLE bench_copy (email text, first_name text, last_name text, city text);
                   CREATE UNIQUE INDEX ON bench_copy (lower(email));
                   INSERT INTO lists (id, name) VALUES (1, 'floor');" >/dev/null
echo "rows $ROWS"
timed "psql \\copy (reference)" "\\copy bench_copy FROM '$WORK/big.csv' WITH (FORMAT csv, HEADER true)"
timed "COPY ready rows into recipients" \
  "\\copy recipients (id, email, email_key, domain, attributes) FROM '$WORK/rec.csv' WITH (FORMAT csv)"
timed "COPY memberships into list_members" \
  "\\copy list_members (list_id, recipient_id) FROM '$WORK/mem.csv' WITH (FORMAT csv)"
