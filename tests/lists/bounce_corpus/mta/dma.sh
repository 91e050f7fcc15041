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
  stop) pkill -x dma || true ;;  # its retries of 4xx run on for days
esac
