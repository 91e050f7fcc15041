#!/usr/bin/env bash
# The DragonFly Mail Agent in its chroot: everything through the peer as
# smarthost; its bounces are plain text, not RFC 3464.
set -euo pipefail
case "$1" in
  install)
    command -v dma >/dev/null && exit 0
    echo "dma dma/mailname string mta-dma.example.net" | debconf-set-selections
    echo "dma dma/relayhost string 127.0.0.1" | debconf-set-selections
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dma >/dev/null
    ;;
  configure)
    port="$2"
    echo mta-dma.example.net >/etc/mailname
    cat >/etc/dma/dma.conf <<CONF
SMARTHOST 127.0.0.1
PORT $port
MAILNAME /etc/mailname
CONF
    ;;
  start) ;;
  submit)
    from="$2"; shift 2
    /usr/sbin/dma -f "$from" -- "$@"
    ;;
  flush) /usr/sbin/dma -q || true ;;
  stop)
    # Its retries of 4xx would run on for days. No procps in the chroot:
    # every process whose binary is this chroot's dma.
    for p in /proc/[0-9]*; do
      [[ "$p/exe" -ef /usr/sbin/dma ]] 2>/dev/null && kill "${p#/proc/}" 2>/dev/null
    done
    true
    ;;
esac
