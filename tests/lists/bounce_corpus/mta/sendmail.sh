#!/usr/bin/env bash
# Sendmail in its chroot: relays every domain (the bounce domain too) to the
# peer through SMART_HOST [127.0.0.1] on the given port, without DNS or TLS.
# No listener: messages come in through `sendmail -Am -odi -oem` (delivered
# at once, errors mailed back), so a 5xx bounces at once. A 4xx leaves the
# message queued: flush runs the queue after a few seconds (past
# Timeout.queuewarn, 1s: delay warnings) and again after Timeout.queuereturn
# (1m: the message is returned), then once more for anything left.
set -euo pipefail
fqdn=mta-sendmail.example.net
sm=/usr/sbin/sendmail-mta  # Debian: -> /usr/libexec/sendmail/sendmail
warn=1s return_after=1m return_secs=60
case "$1" in
  install)
    if ! command -v m4 >/dev/null || [[ ! -x "$sm" ]] \
       || [[ ! -f /usr/share/sendmail/cf/m4/cf.m4 ]]; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        sendmail-bin sendmail-cf m4 >/dev/null
    fi
    ;;
  configure)
    port="$2"
    # Sendmail looks names up in files only (service.switch): no resolver
    # waits. The node name must qualify from /etc/hosts, or sendmail sleeps
    # 60 s at every start ("My unqualified host name (...) unknown").
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s mta-sendmail %s\n::1\tlocalhost\n' \
      "$fqdn" "$(uname -n)" >/etc/hosts
    printf 'hosts\tfiles\naliases\tfiles\n' >/etc/mail/service.switch
    cat >/etc/mail/gen-sendmail.mc <<EOF
divert(-1)
# Bounce corpus: relay everything to the peer on 127.0.0.1:$port.
divert(0)dnl
include(\`/usr/share/sendmail/cf/m4/cf.m4')dnl
VERSIONID(\`bounce corpus')dnl
define(\`_USE_ETC_MAIL_')dnl
OSTYPE(\`debian')dnl
DOMAIN(\`debian-mta')dnl
undefine(\`confHOST_STATUS_DIRECTORY')dnl
define(\`confDOMAIN_NAME', \`$fqdn')dnl
define(\`confSERVICE_SWITCH_FILE', \`/etc/mail/service.switch')dnl
define(\`confHOSTS_FILE', \`/etc/hosts')dnl
define(\`confDONT_PROBE_INTERFACES', \`True')dnl
define(\`confBIND_OPTS', \`-DNSRCH -DEFNAMES')dnl
define(\`confTO_IDENT', \`0s')dnl
define(\`confTO_HOSTSTATUS', \`0s')dnl
define(\`confTO_QUEUEWARN', \`$warn')dnl
define(\`confTO_QUEUERETURN', \`$return_after')dnl
define(\`confQUEUE_LA', \`1000')dnl
define(\`confREFUSE_LA', \`1000')dnl
define(\`confDELAY_LA', \`0')dnl
define(\`confMIN_QUEUE_AGE', \`0')dnl
define(\`SMART_HOST', \`[127.0.0.1]')dnl
define(\`RELAY_MAILER_ARGS', \`TCP \$h $port')dnl
define(\`ESMTP_MAILER_ARGS', \`TCP \$h $port')dnl
define(\`SMTP_MAILER_ARGS', \`TCP \$h $port')dnl
FEATURE(\`nocanonify')dnl
FEATURE(\`nouucp', \`reject')dnl
MAILER(\`local')dnl
MAILER(\`smtp')dnl
EOF
    m4 /etc/mail/gen-sendmail.mc >/etc/mail/sendmail.cf.new
    mv /etc/mail/sendmail.cf.new /etc/mail/sendmail.cf
    [[ -f /etc/mail/aliases ]] || printf 'postmaster: root\nMAILER-DAEMON: postmaster\n' >/etc/mail/aliases
    "$sm" -Am -bi >/dev/null 2>&1 || true
    rm -f /var/spool/mqueue/* /var/lib/sendmail/dead.letter  # an earlier run's
    ;;
  start) : ;;  # no daemon, no listener: flush runs the queue itself
  submit)
    from="$2"; shift 2
    # The driver passes the recipients as one word, separated by spaces.
    read -ra rcpts <<<"$*"
    # A refused recipient makes sendmail exit 65/67/69/75/76/77 (its bounce is
    # mailed all the same); any other status is a real problem: show it.
    rc=0
    "$sm" -Am -odi -oem -oi -f "$from" -- "${rcpts[@]}" || rc=$?
    case "$rc" in
      0|65|67|68|69|75|76|77) ;;
      *) echo "sendmail.sh: sendmail exited $rc for $from -> ${rcpts[*]}" >&2 ;;
    esac
    ;;
  flush)
    runq() { "$sm" -Am -oem "$@" || true; }
    sleep 2
    runq -qf                       # past queuewarn: delay warnings
    sleep "$((return_secs + 2))"
    runq -qf                       # past queuereturn: returned mail
    sleep 2
    runq -qf                       # bounces that were themselves deferred
    "$sm" -Am -bp 2>/dev/null | tail -1 >&2 || true
    ;;
  stop)
    # No daemon was started; still end any sendmail left in this chroot
    # (same root directory as ours), never one of another chroot's.
    me="$(stat -c %d:%i /)"
    for p in /proc/[0-9]*; do
      [[ "$(cat "$p/comm" 2>/dev/null)" == sendmail ]] || continue
      [[ "$(stat -Lc %d:%i "$p/root" 2>/dev/null)" == "$me" ]] || continue
      kill "${p#/proc/}" 2>/dev/null || true
    done
    ;;
esac
