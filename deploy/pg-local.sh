#!/usr/bin/env bash
# A private PostgreSQL cluster for tests and the quickstart: created on first
# start under .mailer/pg in the checkout (git-ignored), listening on a unix
# socket there and on a free loopback port, trusting local connections only.
#
#   deploy/pg-local.sh start    create if needed, start, print the URL
#   deploy/pg-local.sh stop     stop it (data is kept)
#   deploy/pg-local.sh url      print the URL (postgresql://mailer@127.0.0.1:PORT/mailer)
#   deploy/pg-local.sh status   exit 0 when running
#   deploy/pg-local.sh destroy  stop it and delete its data
#
# PostgreSQL refuses to run as root; as root the cluster runs as the
# unprivileged system user "mailer-pg", created on first use.
# MAILER_PG_DIR overrides the state folder.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=${MAILER_PG_DIR:-$here/.mailer/pg}
pg_user=mailer-pg

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "pg-local: PostgreSQL server binaries not found; run deploy/install-deps.sh" >&2
  exit 1
fi

# as_owner CMD...: run as the cluster's owner (ourselves, or mailer-pg as root).
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$pg_user" -- "$@"
  else
    "$@"
  fi
}

# Where the data lives. As root, the checkout may sit under a folder the
# unprivileged owner cannot traverse; then the data goes to a private folder
# under /var/tmp and .mailer/pg/datadir points at it.
data_dir() {
  if [ -f "$state/datadir" ]; then cat "$state/datadir"; else echo "$state/data"; fi
}

ensure_owner() {
  [ "$(id -u)" -eq 0 ] || return 0
  if ! id "$pg_user" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$pg_user"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

url() {
  [ -f "$state/port" ] || { echo "pg-local: no cluster yet; run: $0 start" >&2; exit 1; }
  echo "postgresql://mailer@127.0.0.1:$(cat "$state/port")/mailer"
}

is_running() {
  local d
  d=$(data_dir)
  [ -f "$d/PG_VERSION" ] && as_owner "$bindir/pg_ctl" -D "$d" status >/dev/null 2>&1
}

create() {
  ensure_owner
  mkdir -p "$state"
  local d="$state/data"
  if [ "$(id -u)" -eq 0 ] && ! runuser -u "$pg_user" -- test -x "$state" 2>/dev/null; then
    d=$(mktemp -d /var/tmp/mailer-pg.XXXXXX)
    echo "$d" > "$state/datadir"
  fi
  mkdir -p "$d" "$state/run"
  if [ "$(id -u)" -eq 0 ]; then chown "$pg_user" "$d" "$state/run"; fi
  chmod 700 "$d"
  as_owner "$bindir/initdb" -D "$d" -U mailer --auth=trust -E UTF8 --locale=C.UTF-8 >"$state/initdb.log" 2>&1 || {
    cat "$state/initdb.log" >&2; exit 1; }
  free_port > "$state/port"
}

start() {
  if ! [ -f "$(data_dir)/PG_VERSION" ]; then create; fi
  ensure_owner
  if ! is_running; then
    local port d sock log
    port=$(cat "$state/port")
    # Keep the port across restarts (clients reconnect to it); pick another
    # only when something else now listens there. A bind test would also
    # fail for the port's own TIME_WAIT sockets right after a stop.
    if ! python3 -c "import socket,sys; s=socket.socket(); s.settimeout(1); sys.exit(0 if s.connect_ex(('127.0.0.1',$port))==0 else 1)"; then :; else
      port=$(free_port); echo "$port" > "$state/port"
    fi
    d=$(data_dir)
    sock="$state/run"
    log="$d/server.log"
    # fsync off: a private rehearsal/test cluster trades crash safety of the
    # server itself for speed. Never use these settings for production data.
    as_owner "$bindir/pg_ctl" -D "$d" -l "$log" -w -t 60 -o \
      "-p $port -k $sock -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=256MB" \
      start >/dev/null || { tail -n 20 "$log" >&2; exit 1; }
    as_owner "$bindir/psql" -h "$sock" -p "$port" -U mailer -d postgres -qtAc \
      "SELECT 1 FROM pg_database WHERE datname='mailer'" | grep -q 1 ||
      as_owner "$bindir/createdb" -h "$sock" -p "$port" -U mailer mailer
  fi
  mkdir -p "$here/.mailer/pg"
  url | tee "$state/url" >/dev/null
  url
}

stop() {
  if is_running; then
    as_owner "$bindir/pg_ctl" -D "$(data_dir)" -m fast -w stop >/dev/null
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) url ;;
  status) if is_running; then echo "running: $(url)"; else echo "stopped"; exit 3; fi ;;
  destroy)
    stop
    d=$(data_dir)
    rm -rf "$state"
    case "$d" in /var/tmp/mailer-pg.*) rm -rf "$d" ;; esac
    ;;
  *) echo "usage: $0 start|stop|url|status|destroy" >&2; exit 2 ;;
esac
