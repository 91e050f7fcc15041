#!/usr/bin/env bash
# Generates the bounce corpus under tests/data/bounces-mta/ with real MTAs:
# each MTA runs from Debian's own package in a chroot of its own (Debian's
# MTAs conflict with one another), relays a set of messages to peer.py on
# loopback, which refuses recipients with real provider replies, and the
# bounces (DSNs, non-delivery notices, delay warnings) the MTA writes back
# are stored as they arrive, one file each.
#
#   [MTA_PORT=2600] tests/lists/bounce_corpus/generate.sh MTA...
#     MTA: postfix exim sendmail opensmtpd courier (mta/NAME.sh each)
#
# Needs root and debootstrap; builds /srv/mta/base once (about a minute),
# then a copy per MTA. Not part of the test run: the corpus it writes is
# kept in the repository and tests/lists/sisimai_compare.sh reads it.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out_root="$root/tests/data/bounces-mta"
chroots="${MTA_CHROOTS:-/srv/mta}"
replies="${MTA_REPLIES:-$root/../shared/providers/replies.tsv}"

mirror() {
  awk '/^URIs:/ {print $2; exit} /^deb / {print $2; exit}' \
    /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -1
}

base() {
  [[ -x "$chroots/base/bin/bash" ]] && return
  mkdir -p "$chroots"
  debootstrap --variant=minbase bookworm "$chroots/base" "$(mirror)"
}

# The rules: ours, then the provider replies that refuse (4xx, 5xx) at
# MAIL, RCPT or after DATA.
compose_rules() {
  grep -v '^#' "$here/rules.tsv"
  if [[ -f "$replies" ]]; then
    awk -F'\t' '!/^#/ && ($2 == "rcpt" || $2 == "eod" || $2 == "mail") && $3 ~ /^[45]/ {
                  sub(/ \(observed\)$/, "", $3); print $2 "\t" $3 }' "$replies"
  fi
}

# Messages: each rule alone, twice (two recipient domains); rules in pairs
# with an accepted recipient beside them; MAIL-stage rules through the
# sender. Each message is FROM<TAB>RCPT[,RCPT...] in index.tsv and NNNN.eml.
compose_messages() {
  local dir="$1" mta="$2" rules="$3"
  mkdir -p "$dir"
  : >"$dir/index.tsv"
  local n=0 i stage domains=(example.net example.org mail.example.com)
  local -a stages
  mapfile -t stages < <(cut -f1 "$rules")
  write() {  # FROM RCPTS
    n=$((n + 1))
    local id
    id=$(printf '%04d' "$n")
    printf '%s\t%s\n' "$1" "$2" >>"$dir/index.tsv"
    {
      printf 'Return-Path: <%s>\n' "$1"
      printf 'Message-ID: <%s.%s@news.example.com>\n' "$id" "$mta"
      printf 'Date: Tue, 01 Dec 2026 10:00:%02d +0000\n' $((n % 60))
      printf 'From: "Example News" <news@example.com>\n'
      printf 'To: %s\n' "${2%%,*}"
      printf 'Subject: December offers %s\n' "$id"
      printf 'MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n'
      printf 'List-Unsubscribe: <https://news.example.com/u/%s>\n' "$id"
      printf 'List-Unsubscribe-Post: List-Unsubscribe=One-Click\n'
      printf 'Feedback-ID: %s:campaign7:news:example\n\n' "$id"
      printf 'Hello,\n\nthis month: everything you asked about.\n\n-- \nExample News\n'
    } >"$dir/$id.eml"
  }
  for i in "${!stages[@]}"; do
    stage="${stages[$i]}"
    if [[ "$stage" == mail ]]; then
      write "bounce+r$i@collect.test" "u$i.$mta@${domains[$((i % 3))]}"
      write "bounce+r$i@collect.test" "v$i.$mta@${domains[$(((i + 1) % 3))]},w$i.$mta@${domains[$(((i + 1) % 3))]}"
      continue
    fi
    write "bounce+m$i@collect.test" "r$i.a.$mta@${domains[$((i % 3))]}"
    write "bounce+m$i@collect.test" "r$i.b.$mta@${domains[$(((i + 1) % 3))]}"
  done
  for ((i = 0; i + 1 < ${#stages[@]}; i += 2)); do
    [[ "${stages[$i]}" == mail || "${stages[$((i + 1))]}" == mail ]] && continue
    local d="${domains[$((i % 3))]}"
    write "bounce+p$i@collect.test" "r$i.c.$mta@$d,r$((i + 1)).c.$mta@$d,ok$i.c.$mta@$d"
  done
}

run_mta() {
  local mta="$1" port="$2"
  local dir="$chroots/$mta" out="$out_root/$mta"
  [[ -f "$here/mta/$mta.sh" ]] || { echo "no $here/mta/$mta.sh" >&2; return 1; }
  if [[ ! -x "$dir/bin/bash" ]]; then
    cp -a "$chroots/base" "$dir"
  fi
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
  chmod +x "$dir/usr/sbin/policy-rc.d"
  mkdir -p "$dir/gen" "$dir/proc" "$dir/dev"
  mountpoint -q "$dir/proc" || mount -t proc proc "$dir/proc"
  mountpoint -q "$dir/dev" || mount --bind /dev "$dir/dev"
  rm -rf "$dir/gen"/* && cp -a "$here/mta/$mta.sh" "$dir/gen/mta.sh"
  compose_rules >"$dir/gen/rules.tsv"
  compose_messages "$dir/gen/msgs" "$mta" "$dir/gen/rules.tsv"

  rm -rf "$out" && mkdir -p "$out"
  local -a peer_args=()
  # An MTA script may ask for peer options in a "# peer: --option" line.
  mapfile -t peer_args < <(sed -n 's/^# peer: //p' "$here/mta/$mta.sh")
  python3 "$here/peer.py" --port "$port" --rules "$dir/gen/rules.tsv" --out "$out" \
    "${peer_args[@]}" 2>"$dir/gen/peer.log" &
  peer=$!
  current="$dir"
  sleep 1

  chroot "$dir" bash /gen/mta.sh install
  chroot "$dir" bash /gen/mta.sh configure "$port"
  chroot "$dir" bash /gen/mta.sh start
  local from rcpts n=0
  while IFS=$'\t' read -r from rcpts; do
    n=$((n + 1))
    # shellcheck disable=SC2086  # one argument per recipient
    chroot "$dir" bash /gen/mta.sh submit "$from" ${rcpts//,/ } \
      <"$dir/gen/msgs/$(printf '%04d' "$n").eml"
  done <"$dir/gen/msgs/index.tsv"
  chroot "$dir" bash /gen/mta.sh flush || true
  # Wait until no bounce has arrived for 20 s (delay warnings and retries
  # come later than the rest).
  local last=-1 count quiet=0
  while ((quiet < 20)); do
    count=$(find "$out" -name '*.eml' | wc -l)
    if [[ "$count" == "$last" ]]; then quiet=$((quiet + 1)); else quiet=0; last=$count; fi
    sleep 1
  done
  chroot "$dir" bash /gen/mta.sh stop || true
  cleanup
  cp "$dir/gen/rules.tsv" "$out/rules.tsv"
  echo "$mta: $n messages sent, $count bounces stored in $out"
}

# Stops the peer and unmounts the chroot's /proc and /dev, also when a step
# fails.
peer="" current=""
cleanup() {
  [[ -n "$peer" ]] && kill "$peer" 2>/dev/null || true
  if [[ -n "$current" ]]; then
    umount "$current/proc" 2>/dev/null || true
    umount "$current/dev" 2>/dev/null || true
  fi
  peer="" current=""
}
trap cleanup EXIT

base
port="${MTA_PORT:-2600}"
for mta in "$@"; do
  run_mta "$mta" "$port"
  port=$((port + 1))
done
