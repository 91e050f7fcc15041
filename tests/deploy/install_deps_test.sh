#!/usr/bin/env bash
# deploy/install-deps.sh on its install path, with stand-ins for apt-get,
# dpkg-query and debconf-set-selections on PATH (nothing is installed), in the
# two states a machine can be in: Debian's container images ship a
# policy-rc.d, a bare machine has none. Either way the script must exit 0,
# keep package scripts from starting services while it installs, and leave
# the machine's own policy file as it found it.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir -p "$scratch/bin"
policy="$scratch/policy-rc.d"
cat >"$scratch/bin/dpkg-query" <<'STUB'
#!/bin/sh
# Every package is missing.
exit 1
STUB
cat >"$scratch/bin/apt-get" <<STUB
#!/bin/sh
# Records each call and whether a policy file was in force during it.
if [ -e "$policy" ]; then state=policy; else state=no-policy; fi
echo "\$1 \$state" >>"$scratch/apt.log"
exit 0
STUB
cat >"$scratch/bin/debconf-set-selections" <<'STUB'
#!/bin/sh
cat >/dev/null
STUB
chmod +x "$scratch/bin/"*

run_install() {
  rm -f "$scratch/apt.log"
  PATH="$scratch/bin:$PATH" MAILER_POLICY_RC_D="$policy" bash "$repo/deploy/install-deps.sh" \
    >"$scratch/out.log" 2>&1
}

# 1. A policy file already there (as in Debian's container images).
printf '#!/bin/sh\nexit 101\n# the machine own\n' >"$policy"
before=$(cat "$policy")
rc=0; run_install || rc=$?
[ "$rc" = 0 ] || { cat "$scratch/out.log"; fail "exit status $rc with a policy file already present"; }
grep -q 'install-deps: done' "$scratch/out.log" || fail "no 'done' line with a policy file present"
[ -f "$policy" ] || fail "the machine's own policy file was removed"
[ "$(cat "$policy")" = "$before" ] || fail "the machine's own policy file was changed"
grep -q '^install policy$' "$scratch/apt.log" || fail "apt-get install did not run under a policy"

# 2. No policy file (a bare machine): one is put in place for the install and taken away after.
rm -f "$policy"
rc=0; run_install || rc=$?
[ "$rc" = 0 ] || { cat "$scratch/out.log"; fail "exit status $rc without a policy file"; }
grep -q 'install-deps: done' "$scratch/out.log" || fail "no 'done' line without a policy file"
grep -q '^install policy$' "$scratch/apt.log" || fail "services could start during the install"
[ ! -e "$policy" ] || fail "the policy file the script created was left behind"

echo "install-deps: both policy states pass"
