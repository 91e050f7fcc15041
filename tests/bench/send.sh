#!/usr/bin/env bash
# End-to-end sending throughput: a campaign of N recipients (default 100,000)
# with ~4 KB personalised messages, delivered by `mailer run` over 20
# connections to Postfix's smtp-sink, PostgreSQL state included (the audience
# freeze, claims and outcome writes are inside the timed step, as in a real
# run); beside `smtp-source -d -s 20 -m N -l 4096` to the same sink in the
# same invocation. Then the same campaign signed with DKIM rsa-sha256
# (2048-bit) beside `openssl speed rsa2048` (one core), and once with
# ed25519-sha256 beside `openssl speed ed25519`.
#
#   tests/bench/send.sh [RECIPIENTS] [BUILD_DIR]
#
# Environment: ROUNDS (default 3) plain rounds; DKIM_N (default RECIPIENTS)
# recipients of each DKIM campaign; DKIM_ROUNDS (default 1) rsa-sha256 rounds.
#
# Fairness: before every timed step (either side) the cluster is
# checkpointed and vacuumed (no ANALYZE: a real run does not get one after
# its audience is frozen); the two sides alternate which goes first from
# round to round; each figure is the median of its rounds, every round is
# printed. CPU is user+sys of the mailer process and of smtp-source, from
# /usr/bin/time. Prints each target with its ratio and PASS or FAIL:
#   plain rate           >= 0.8 x smtp-source's rate
#   worker CPU/message   <= 1.5 x smtp-source's CPU/message
#   DKIM rsa-sha256 rate >= 0.8 x openssl speed rsa2048 sign/s (one core)
#   peak RSS of a worker <= 150 MB
# Exits 1 when a target fails. BUILD_DIR (default build) must hold a built
# `mailer`. Uses a throwaway PostgreSQL cluster (deploy/pg-local.sh) and
# loopback only.
set -euo pipefail

N=${1:-100000}
BUILD=${2:-build}
ROUNDS=${ROUNDS:-3}
DKIM_N=${DKIM_N:-$N}
DKIM_ROUNDS=${DKIM_ROUNDS:-1}
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
# Two lists: N recipients for the plain rounds, DKIM_N for the signed ones.
psql "$URL" -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO domains (domain, provider) VALUES ('example.org', 'other:example.org');
INSERT INTO lists (name) VALUES ('bench'), ('bench-dkim');
INSERT INTO recipients (email, email_key, domain, attributes)
  SELECT 'reader' || i || '@example.org', 'reader' || i || '@example.org', 'example.org',
         jsonb_build_object('first_name', 'Reader ' || i, 'city', 'City ' || (i % 500))
  FROM generate_series(1, GREATEST($N, $DKIM_N)) i;
INSERT INTO list_members (list_id, recipient_id) SELECT 1, id FROM recipients WHERE id <= $N;
INSERT INTO list_members (list_id, recipient_id) SELECT 2, id FROM recipients WHERE id <= $DKIM_N;
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

calc() { python3 -c "print($1)"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
settle() { psql "$URL" -q -c CHECKPOINT -c VACUUM; }

# source_round: one smtp-source run of N messages; sets SRC_RATE (messages/s)
# and SRC_CPU (user+sys seconds).
source_round() {
  settle
  /usr/bin/time -f '%e %U %S' -o "$WORK/time" \
    /usr/sbin/smtp-source -d -s "$SESSIONS" -m "$N" -l "$BYTES" 127.0.0.1:"$PORT"
  read -r wall user sys <"$WORK/time"
  SRC_RATE=$(calc "round($N/$wall, 1)")
  SRC_CPU=$(calc "round($user+$sys, 2)")
  echo "  smtp-source: $N in ${wall}s = $SRC_RATE messages/s; CPU ${user}s user + ${sys}s sys"
}

# mailer_round LABEL LIST COUNT: one campaign over LIST sent by one worker;
# sets RATE, CPU (user+sys seconds) and RSS (peak, MB).
mailer_round() {
  local label=$1 list=$2 count=$3 id sent
  id=$(M campaign create --name "bench-$label" --list "$list" --from 'Bench <news@example.com>' \
    --subject 'News for {{first_name}}' --text "$WORK/body.txt" --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  M campaign start "$id" 2>/dev/null
  settle
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$MAILER" --config "$WORK/mailer.toml" \
    --log-level warn run --worker-id "bench-$label" --until-idle --campaign "$id" \
    2>>"$WORK/worker.err"
  read -r wall user sys rss <"$WORK/time"
  sent=$(psql "$URL" -qtAc "SELECT count(*) FROM deliveries WHERE campaign_id = $id AND state = 'sent'")
  if [ "$sent" != "$count" ]; then
    echo "  $label: only $sent of $count sent" >&2
    FAILED=1
  fi
  RATE=$(calc "round($sent/$wall, 1)")
  CPU=$(calc "round($user+$sys, 2)")
  RSS=$((rss / 1024))
  [ "$RSS" -gt "$PEAK_RSS" ] && PEAK_RSS=$RSS
  echo "  mailer $label: $sent/$count sent in ${wall}s = $RATE messages/s; CPU ${user}s user + ${sys}s sys; peak RSS $RSS MB"
}

FAILED=0
PEAK_RSS=0
verdict() {  # verdict NAME OK(1/0) TEXT
  local word=PASS
  if [ "$2" != 1 ]; then word=FAIL; FAILED=1; fi
  printf '%-5s %-26s %s\n' "$word" "$1" "$3"
}

echo "== $N recipients, ~4 KB messages, $SESSIONS connections, smtp-sink on 127.0.0.1:$PORT"
echo "load: $(uptime)"
src_rates=(); src_cpus=(); our_rates=(); our_cpus=()
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  if [ $((round % 2)) = 1 ]; then
    source_round; src_rates+=("$SRC_RATE"); src_cpus+=("$SRC_CPU")
    mailer_round "plain-$round" bench "$N"; our_rates+=("$RATE"); our_cpus+=("$CPU")
  else
    mailer_round "plain-$round" bench "$N"; our_rates+=("$RATE"); our_cpus+=("$CPU")
    source_round; src_rates+=("$SRC_RATE"); src_cpus+=("$SRC_CPU")
  fi
done
src_rate=$(median "${src_rates[@]}"); our_rate=$(median "${our_rates[@]}")
src_cpu=$(median "${src_cpus[@]}"); our_cpu=$(median "${our_cpus[@]}")
src_cpu_msg=$(calc "round($src_cpu/$N*1e6, 1)"); our_cpu_msg=$(calc "round($our_cpu/$N*1e6, 1)")
echo "smtp-source: median $src_rate messages/s, CPU $src_cpu s = $src_cpu_msg us/message"
echo "mailer:      median $our_rate messages/s, CPU $our_cpu s = $our_cpu_msg us/message"

rsa_rates=(); rsa_speeds=()
config rsa-sha256 "$WORK/rsa.pem" >"$WORK/mailer.toml"
for round in $(seq "$DKIM_ROUNDS"); do
  echo "dkim rsa-sha256 round $round"
  speed=$(openssl speed -seconds 3 rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ {print $6}')
  echo "  openssl speed rsa2048: $speed sign/s (one core)"
  mailer_round "dkim-rsa2048-$round" bench-dkim "$DKIM_N"
  rsa_rates+=("$RATE"); rsa_speeds+=("$speed")
done
rsa_rate=$(median "${rsa_rates[@]}"); rsa_speed=$(median "${rsa_speeds[@]}")

echo "dkim ed25519-sha256 (no target)"
ed_speed=$(openssl speed -seconds 3 ed25519 2>/dev/null | awk '/EdDSA \(Ed25519\)/ {print $7}')
echo "  openssl speed ed25519: $ed_speed sign/s (one core)"
config ed25519-sha256 "$WORK/ed25519.pem" >"$WORK/mailer.toml"
mailer_round dkim-ed25519 bench-dkim "$DKIM_N"

echo "load: $(uptime)"
echo "== targets"
r=$(calc "round($our_rate/$src_rate, 2)")
verdict "plain rate" "$(calc "int($r >= 0.8)")" \
  "$our_rate / $src_rate messages/s = $r x smtp-source (target >= 0.8)"
r=$(calc "round($our_cpu/$src_cpu, 2)")
verdict "worker CPU per message" "$(calc "int($r <= 1.5)")" \
  "$our_cpu_msg / $src_cpu_msg us = $r x smtp-source (target <= 1.5)"
r=$(calc "round($rsa_rate/$rsa_speed, 2)")
verdict "DKIM rsa-sha256 2048 rate" "$(calc "int($r >= 0.8)")" \
  "$rsa_rate messages/s / $rsa_speed sign/s = $r x openssl speed (target >= 0.8)"
verdict "peak RSS" "$(calc "int($PEAK_RSS <= 150)")" "$PEAK_RSS MB (target <= 150 MB)"

if [ -s "$WORK/worker.err" ]; then echo "worker stderr (last lines):"; tail -n 5 "$WORK/worker.err"; fi
exit "$FAILED"
