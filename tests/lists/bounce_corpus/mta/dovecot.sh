#!/usr/bin/env bash
# Dovecot in its chroot: not a relay but the final mailbox. Each recipient
# is delivered with dovecot-lda to one of eight local users (passwd-file
# userdb), chosen by the recipient's number; each user's Sieve script
# (Pigeonhole) answers with a vacation reply (several shapes and languages)
# or a reject, and one user is over quota, so lda refuses the
# message and sends its own rejection. Dovecot sends what it generates by
# SMTP straight to the peer (submission_host), so no local MTA is needed.
# lda sends synchronously: every reply has reached the peer when lda exits.
# The Dovecot master runs between start and stop for lda's userdb lookups.
#
# The driver's messages carry List-Unsubscribe and List-Unsubscribe-Post,
# and Pigeonhole never answers a message with a List-* header ("discarding
# vacation response to mailinglist recipient"): for the vacation users the
# List-* header fields are left out of the delivered copy.
set -euo pipefail

users=(anna bernd claire dave emma frank greta hugo)
home=/var/vmail
log=/var/log/dovecot-lda.log

# The user of a recipient: its number plus an offset by kind, so that the
# recipients of one message, and the two messages a sender sends
# (rNN.a, rNN.b), reach different users.
user_of() {
  local lp="${1%%@*}" nn=0 k=0
  [[ "$lp" =~ ^[a-z]+([0-9]+) ]] && nn=$((10#${BASH_REMATCH[1]}))
  case "$lp" in
    r*.b.*|v*) k=1 ;;
    r*.c.*|w*) k=2 ;;
    ok*) k=4 ;;
  esac
  echo "${users[$(((nn + k) % ${#users[@]}))]}"
}

# The addresses a vacation user answers for (:addresses): every recipient
# the driver will deliver to it and the To: of those messages (the first
# recipient, which may be another user's).
addresses_of() {
  local user="$1" from rcpts r to
  local -A seen=()
  while IFS=$'\t' read -r from rcpts; do
    to="${rcpts%%,*}"
    for r in ${rcpts//,/ }; do
      [[ "$(user_of "$r")" == "$user" ]] || continue
      seen[$r]=1 seen[$to]=1
    done
  done </gen/msgs/index.tsv
  local out="" a
  for a in "${!seen[@]}"; do out+="${out:+, }\"$a\""; done
  echo "[$out]"
}

sieve_of() {  # USER: the user's Sieve script
  local user="$1" addrs
  case "$user" in
    anna)  # English, no :subject (Pigeonhole makes "Auto: <subject>")
      addrs=$(addresses_of anna)
      cat <<EOF
require "vacation";
vacation :days 1 :addresses $addrs
  "I am out of the office until 4 January 2027 with limited access to email. For urgent matters please contact support@example.net.

Anna Berg";
EOF
      ;;
    bernd)  # German, :subject, :from, :days 7
      addrs=$(addresses_of bernd)
      cat <<EOF
require "vacation";
vacation :days 7 :subject "Abwesenheitsnotiz" :from "Bernd Maier <bernd.maier@example.net>"
  :addresses $addrs text:
Guten Tag,

ich bin bis einschließlich 6. Januar 2027 nicht im Büro. Ihre Nachricht
wird nicht weitergeleitet. In dringenden Fällen wenden Sie sich bitte an
zentrale@example.net.

Mit freundlichen Grüßen
Bernd Maier
.
;
EOF
      ;;
    claire)  # French, :mime body in UTF-8 quoted-printable
      addrs=$(addresses_of claire)
      cat <<EOF
require "vacation";
vacation :days 3 :subject "Réponse automatique : absente" :mime
  :addresses $addrs text:
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Bonjour,

Je suis absente du bureau jusqu'au 5 janvier 2027. Votre message ne sera p=
as transf=C3=A9r=C3=A9. Pour toute demande urgente, =C3=A9crivez =C3=A0 acc=
ueil@example.net.

Cordialement,
Claire Lef=C3=A8vre
.
;
EOF
      ;;
    dave)  # RFC 5429 reject: an MDN to the sender
      cat <<'EOF'
require "reject";
reject text:
This mailbox is closed. Dave Smith no longer works at Example;
please write to info@example.net instead.
.
;
EOF
      ;;
    emma)  # reject again, German reason (Pigeonhole 0.5.19 has no
           # ereject: it is built only with its unfinished features)
      cat <<'EOF'
require "reject";
reject "Das Postfach von Emma Schulz wurde geschlossen. Bitte wenden Sie sich an info@example.net.";
EOF
      ;;
    frank)  # over quota: lda refuses before the script matters
      echo 'keep;'
      ;;
    greta)  # English, :mime multipart/alternative, :handle
      addrs=$(addresses_of greta)
      cat <<EOF
require "vacation";
vacation :days 2 :subject "Out of Office: Greta Holm" :handle "ooo-2026-12" :mime
  :addresses $addrs text:
Content-Type: multipart/alternative; boundary="ooo-greta"

--ooo-greta
Content-Type: text/plain; charset=us-ascii

Thank you for your message. I am on parental leave until March 2027.
Your message will not be forwarded; please contact team@example.net.

--ooo-greta
Content-Type: text/html; charset=us-ascii

<p>Thank you for your message. I am on parental leave until March 2027.</p>
<p>Your message will not be forwarded; please contact
<a href="mailto:team@example.net">team@example.net</a>.</p>

--ooo-greta--
.
;
EOF
      ;;
    hugo)  # English, subject built from the original's with variables
      addrs=$(addresses_of hugo)
      cat <<EOF
require ["vacation", "variables"];
set "subj" "your message";
if header :matches "subject" "*" { set "subj" "\${1}"; }
vacation :days 1 :subject "Automatic reply: \${subj}" :from "hugo.weber@example.net"
  :addresses $addrs
  "Hello,

I have left Example on 30 November 2026. Your message about \"\${subj}\" has not been read. Please write to sales@example.net.

Hugo Weber";
EOF
      ;;
  esac
}

# Every process whose binary is one of this chroot's Dovecot programs (no
# procps in the chroot; /proc is the host's).
dovecot_pids() {
  local p exe
  for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    case "$exe" in
      /usr/sbin/dovecot|/usr/lib/dovecot/*|/usr/bin/doveadm|/usr/bin/doveconf) ;;
      *) continue ;;
    esac
    [[ "$p/exe" -ef "$exe" ]] && echo "${p#/proc/}"
  done
  true
}

case "$1" in
  install)
    [[ -x /usr/lib/dovecot/dovecot-lda && -x /usr/bin/sievec ]] && exit 0
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends dovecot-core dovecot-sieve >/dev/null
    ;;
  configure)
    port="$2"
    getent group vmail >/dev/null || groupadd -g 5000 vmail
    getent passwd vmail >/dev/null || useradd -u 5000 -g 5000 -d "$home" -M -s /usr/sbin/nologin vmail
    cat >/etc/dovecot/dovecot.conf <<CONF
# Only dovecot-lda runs: no listeners.
protocols =
ssl = no
hostname = mx.dovecot.example.net
postmaster_address = postmaster@example.net
submission_host = 127.0.0.1:$port
log_path = $log
info_log_path = $log
mail_location = maildir:~/Maildir
mail_plugins = quota
first_valid_uid = 5000
quota_full_tempfail = no
lda_mailbox_autocreate = yes
passdb {
  driver = passwd-file
  args = /etc/dovecot/users
}
userdb {
  driver = passwd-file
  args = /etc/dovecot/users
}
protocol lda {
  mail_plugins = \$mail_plugins sieve
}
plugin {
  sieve = file:~/sieve;active=~/.dovecot.sieve
  sieve_extensions = +vacation-seconds
  quota = maildir:User quota
}
CONF
    # A fresh start each run: mailboxes, vacation memory, compiled scripts.
    rm -rf "$home" && mkdir -p "$home"
    : >/etc/dovecot/users
    for u in "${users[@]}"; do
      extra=""
      [[ "$u" == frank ]] && extra="userdb_quota_rule=*:storage=1k"
      printf '%s:{PLAIN}secret:5000:5000::%s/%s::%s\n' "$u" "$home" "$u" "$extra" >>/etc/dovecot/users
      mkdir -p "$home/$u/Maildir/cur" "$home/$u/Maildir/new" "$home/$u/Maildir/tmp" "$home/$u/sieve"
      sieve_of "$u" >"$home/$u/.dovecot.sieve"
    done
    # frank's mailbox is already full (2 kB over a 1 kB quota).
    { printf 'From: old@example.net\nSubject: old\n\n'; head -c 2048 /dev/zero | tr '\0' x; echo; } \
      >"$home/frank/Maildir/cur/1700000000.M1P1.mx:2,S"
    chown -R vmail:vmail "$home"
    chown root:dovecot /etc/dovecot/users && chmod 0640 /etc/dovecot/users
    : >"$log"
    for u in "${users[@]}"; do
      [[ "$u" == frank ]] && continue
      su -s /bin/sh vmail -c "/usr/bin/sievec $home/$u/.dovecot.sieve" ||
        { echo "sieve script of $u does not compile" >&2; exit 1; }
    done
    ;;
  start)
    # The master runs only for the auth service, which lda asks for the
    # userdb (no protocols, no listeners).
    /usr/sbin/dovecot
    for _ in $(seq 20); do [[ -S /run/dovecot/auth-userdb ]] && break; sleep 0.5; done
    ;;
  submit)
    from="$2"; shift 2
    msg=$(mktemp)
    cat >"$msg"
    for rcpt in "$@"; do
      user=$(user_of "$rcpt")
      case "$user" in
        anna|bernd|claire|greta|hugo)
          # Without the List-* header fields (see the top).
          awk 'BEGIN { h = 1 }
               h && /^$/ { h = 0 }
               h && /^[Ll]ist-/ { skip = 1; next }
               h && skip && /^[ \t]/ { next }
               { skip = 0; print }' "$msg" ;;
        *) cat "$msg" ;;
      esac | DOVECOT_HOSTDOMAIN=mx.dovecot.example.net /usr/lib/dovecot/dovecot-lda -d "$user" -a "$rcpt" -f "$from" ||
        echo "dovecot-lda -d $user -a $rcpt -f $from: exit $?" >&2
    done
    rm -f "$msg"
    true
    ;;
  flush)
    # lda sends its replies before it exits; wait (up to 30 s) for any
    # still running, then show what failed.
    for _ in $(seq 30); do
      [[ -z "$(dovecot_pids)" ]] && break
      sleep 1
    done
    grep -E ' (Error|Fatal|Panic|Warning): ' "$log" | head -20 >&2 || true
    ;;
  stop)
    /usr/sbin/dovecot stop 2>/dev/null || true
    for _ in $(seq 20); do [[ -z "$(dovecot_pids)" ]] && break; sleep 0.5; done
    for p in $(dovecot_pids); do kill "$p" 2>/dev/null || true; done
    true
    ;;
esac
