#!/usr/bin/env bash
# Exim (Debian's exim4-daemon-light) in its chroot: a minimal config of its
# own (/etc/exim4/exim4.conf, which Debian's exim4 reads before debconf's
# config) routes every domain, collect.test too, to the peer on 127.0.0.1 with
# manualroute: no DNS, no TLS, no listener and no daemon. Each message is
# delivered at submission (-odi), so a 5xx bounces at once; a 4xx is retried
# by the forced queue runs of flush, gets Exim's delay warning after a minute
# and its final bounce ("retry timeout exceeded") once the retry rule's 2 min
# cutoff has passed. Bounce and warning texts are Exim's defaults.
set -euo pipefail

exim=/usr/sbin/exim4
spool=/var/spool/exim4

# Exim processes of this chroot (their binary is this chroot's exim4; other
# chroots have their own copy, so another chroot's exim does not match).
our_exims() {
  local p
  for p in /proc/[0-9]*; do
    [[ "$p/exe" -ef "$exim" ]] 2>/dev/null && echo "${p#/proc/}"
  done
  return 0
}

case "$1" in
  install)
    command -v exim4 >/dev/null && exit 0
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      exim4-daemon-light >/dev/null
    ;;
  configure)
    port="$2"
    cat >/etc/exim4/exim4.conf <<EOF
# Written by tests/lists/bounce_corpus/mta/exim.sh: relay everything to the
# corpus peer on 127.0.0.1:$port; Exim's own bounce and warning texts.
primary_hostname = mta-exim.example.net
qualify_domain = mta-exim.example.net
daemon_smtp_ports =
local_interfaces = 127.0.0.1
keep_environment =
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
# One delay warning a minute after arrival (the next a day later); Exim
# states the delay in whole minutes, so less than a minute reads "0 minutes".
delay_warning = 1m:1d
# A bounce that cannot be delivered is not kept frozen for long.
ignore_bounce_errors_after = 1m
timeout_frozen_after = 2m

begin routers

peer:
  driver = manualroute
  domains = *
  route_list = * 127.0.0.1
  self = send
  transport = peer_smtp
  no_more

begin transports

peer_smtp:
  driver = smtp
  port = $port
  allow_localhost
  hosts_avoid_tls = *
  hosts_try_fastopen = :
  hosts_try_chunking = :
  hosts_try_prdr = :

begin retry

# Retry every 15 s (each queue run of flush forces a try anyway) and give up
# 2 minutes after the first failure: the next failed try bounces.
*   *   F,2m,15s

begin rewrite
EOF
    "$exim" -bV >/dev/null
    ;;
  start)
    # No daemon: deliveries run at submission and in flush's queue runs.
    # Start from an empty queue, retry database and log (a rerun reuses
    # the chroot).
    rm -rf "$spool"/input/* "$spool"/msglog/* "$spool"/db/*
    : >/var/log/exim4/mainlog
    ;;
  submit)
    from="$2"; shift 2
    # generate.sh passes the recipients as one argument, separated by
    # spaces: split them (separate arguments work too).
    read -ra rcpts <<<"$*"
    "$exim" -odi -oi -f "$from" -- "${rcpts[@]}"
    ;;
  flush)
    # Forced queue runs (ignoring retry times) every 10 s until the queue
    # holds nothing but frozen messages, at most about 5 minutes.
    for ((i = 0; i < 30; i++)); do
      left=$("$exim" -bp | awk '/^ *[0-9]+[smhdw] / && !/\*\*\* frozen \*\*\*/ {n++} END {print n+0}')
      ((left == 0)) && break
      sleep 10
      "$exim" -qff
    done
    echo "exim: $("$exim" -bpc) messages left on the queue"
    ;;
  stop)
    # Wait for deliveries still running in the background, then end them.
    for ((i = 0; i < 30; i++)); do
      [[ -z "$(our_exims)" ]] && break
      sleep 1
    done
    for pid in $(our_exims); do kill "$pid" 2>/dev/null || true; done
    ;;
esac
