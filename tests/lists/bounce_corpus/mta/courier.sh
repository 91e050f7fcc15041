#!/usr/bin/env bash
# Courier in its chroot: only courierd runs (no ESMTP listener); mail comes
# in through Courier's sendmail(1) and every domain, collect.test included,
# is relayed by courieresmtp to the peer. A 5xx bounces at once; a 4xx is
# retried every 15 s, draws a "delayed" notice after 30 s and bounces when
# the one-minute queue time is up. Courier's own DSN texts are left as they
# are.
set -euo pipefail
me=mta-courier.example.net
etc=/etc/courier
case "$1" in
  install)
    command -v courier >/dev/null && exit 0
    # The domain Debian's postinst would take from `hostname --fqdn` (empty
    # in a chroot); from it come defaultdomain, locals and dsnfrom.
    debconf-set-selections <<SEL
courier-base courier-base/webadmin-configmode boolean false
courier-mta courier-mta/defaultdomain string $me
courier-mta courier-mta/dsnfrom string mailer-daemon@$me
SEL
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      courier-mta >/dev/null
    ;;
  configure)
    port="$2"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s mta-courier\n' "$me" >/etc/hosts
    echo "$me" >/etc/mailname
    echo "$me" >"$etc/me"
    # What Debian's postinst writes for that domain (again here, in case the
    # package was installed without the preseeding): collect.test is not
    # local, so the notices go out to the peer too.
    echo "$me" >"$etc/defaultdomain"
    printf 'localhost\n%s\n' "$me" >"$etc/locals"
    echo "mailer-daemon@$me" >"$etc/dsnfrom"
    # Every domain to the peer (an IP address goes in brackets: no DNS).
    printf ': [127.0.0.1],%s\n' "$port" >"$etc/esmtproutes"
    # Short queue: retries 15 s apart, a delay notice after 30 s, failure
    # after a minute.
    echo 1m >"$etc/queuetime"
    echo 30s >"$etc/warntime"
    echo 15s >"$etc/retryalpha"
    echo 3 >"$etc/retrybeta"
    echo 15s >"$etc/retrygamma"
    echo 0 >"$etc/retrymaxdelta"
    echo 10s >"$etc/esmtpdelay"
    chmod 644 "$etc"/{me,defaultdomain,locals,dsnfrom,esmtproutes,queuetime,warntime} \
      "$etc"/retry{alpha,beta,gamma,maxdelta} "$etc/esmtpdelay"
    # No TLS towards the peer (it offers none anyway).
    sed -i 's/^ESMTP_USE_STARTTLS=.*/ESMTP_USE_STARTTLS=0/' "$etc/courierd"
    # What the init scripts (tmpfiles.d) would create.
    install -d -m 0775 -o root -g courier /run/courier
    makealiases
    ;;
  start)
    # courierd alone: no esmtpd, esmtpd-msa, courierfilter or authdaemond.
    courier stop >/dev/null 2>&1 || true
    courier start
    ;;
  submit)
    from="$2"; shift 2
    /usr/sbin/sendmail -f "$from" -- "$@"
    ;;
  flush)
    # Wait (at most 3 minutes) for the queue to empty: 4xx recipients bounce
    # only when the queue time is up, and the notices are queued too.
    for ((i = 0; i < 180; i++)); do
      [[ -z "$(find /var/lib/courier/msgs -type f -print -quit 2>/dev/null)" ]] && break
      sleep 1
    done
    ;;
  stop) courier stop ;;
esac
