#!/usr/bin/env bash
# Installs every Debian package that mailer's build, tests and quickstart need.
# Idempotent: when everything is present it only checks (no package index
# refresh, no install), so it is cheap to call from every entry point
# (README, tests/run.sh, .ci/run, the container file). Must run as root, or
# with sudo available, on Debian 12.
set -euo pipefail

PACKAGES=(
  # toolchain
  g++ cmake ninja-build pkg-config clang-format ccache
  # libFuzzer targets (tests/fuzz/run.sh)
  clang libfuzzer-14-dev
  # libraries
  libcurl4-openssl-dev libssl-dev libpqxx-dev libpq-dev libspdlog-dev libfmt-dev
  libboost-dev libgtest-dev libgmock-dev libcli11-dev libtomlplusplus-dev
  nlohmann-json3-dev libcsv-dev libidn2-dev libc-ares-dev libhowardhinnant-date-dev
  # peers used by tests and the quickstart
  postgresql postgresql-contrib postfix dnsmasq-base dovecot-imapd
  # independent checkers used by tests
  python3 python3-dkim procps iproute2 util-linux
  libsisimai-perl  # reference bounce reader for tests/lists/sisimai_compare.sh
  chromium  # headless browser for the dashboard test
  systemd  # systemd-analyze, which verifies the units in deploy/systemd (DeployUnits tests)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present" >&2
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root (missing: ${missing[*]})" >&2; exit 1; }
  SUDO="sudo"
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# postfix asks how to configure itself; we only need its smtp-sink/smtp-source tools.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
# Keep package scripts from starting system services inside build machines and containers.
# A policy file that was already there (Debian's container images ship one) is left alone.
# MAILER_POLICY_RC_D moves it for tests of this script.
policy=${MAILER_POLICY_RC_D:-/usr/sbin/policy-rc.d}
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  created_policy=1
fi
# An if, not an `a && b` chain: under set -e a false test as a trap's last
# command would become the script's exit status.
cleanup() {
  if [ "$created_policy" = 1 ]; then $SUDO rm -f "$policy"; fi
}
trap cleanup EXIT

$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done" >&2
