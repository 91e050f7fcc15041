#!/usr/bin/env bash
# Postfix in its chroot: relays everything to the peer, tries once
# (a 4xx bounces at once), sends a delay warning as soon as it may.
set -euo pipefail
case "$1" in
  install)
    command -v postfix >/dev/null && exit 0
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
    ;;
  configure)
    port="$2"
    [[ -f /etc/postfix/main.cf ]] || cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf
    postconf -e "myhostname = mta-postfix.example.net" "mydomain = example.net" \
      "myorigin = \$myhostname" "mydestination = " "inet_interfaces = loopback-only" \
      "inet_protocols = ipv4" "relayhost = [127.0.0.1]:$port" "smtp_host_lookup = native" \
      "disable_dns_lookups = yes" "maximal_queue_lifetime = 0" "bounce_queue_lifetime = 0" \
      "smtp_tls_security_level = none" "compatibility_level = 3.6" "alias_maps = " \
      "local_recipient_maps = " "notify_classes = "
    # No listener on port 25: messages come in through sendmail(1).
    sed -i 's/^smtp      inet/#smtp      inet/' /etc/postfix/master.cf
    newaliases 2>/dev/null || true
    ;;
  start) postfix start 2>/dev/null || postfix reload ;;
  submit)
    from="$2"; shift 2
    /usr/sbin/sendmail -f "$from" -- "$@"
    ;;
  flush) postqueue -f ;;
  stop) postfix stop ;;
esac
