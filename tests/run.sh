#!/usr/bin/env bash
# The test command: installs dependencies, builds the normal and the
# sanitizer (ASan+UBSan) configurations warnings-as-errors, starts a private
# PostgreSQL, runs every unit and integration test in both and the
# quickstart (twice), and stops the cluster whatever happens. Exits non-zero
# on any failure.
#
#   tests/run.sh            everything (what CI runs)
#   MAILER_TEST_LONG=1      also the long reliability trials
#   MAILER_SKIP_SANITIZE=1  only the normal configuration (quicker local runs)
#   MAILER_SKIP_QUICKSTART=1  skip running deploy/quickstart.sh twice
#   MAILER_SKIP_FUZZ=1      skip the libFuzzer targets (tests/fuzz/run.sh)
#   MAILER_FUZZ_SECONDS=60  how long each fuzz target runs
#   CTEST_ARGS="-R Config"  extra arguments for ctest (a filter matching no
#                           test is a failure)
#   CI=true                 a skipped test is a failure (.ci/run sets it and
#                           clears the MAILER_SKIP_* switches and CTEST_ARGS)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
jobs=$(nproc)

# Each phase's wall time, printed as it ends and again in a table at the end,
# so a run creeping towards CI's time limit shows where before it fails.
phase_log=()
phase_name="" phase_start=0
phase() {
  phase_end
  phase_name=$1 phase_start=$SECONDS
  echo "== $1"
}
phase_end() {
  [ -n "$phase_name" ] || return 0
  local took=$((SECONDS - phase_start))
  echo "-- $phase_name: ${took} s"
  phase_log+=("$(printf '%6d s  %s' "$took" "$phase_name")")
  phase_name=""
}

phase "dependencies"
bash deploy/install-deps.sh

configure_and_build() {
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja -DMAILER_WERROR=ON "$@" >"$dir.configure.log" 2>&1 || {
    cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j"$jobs"
}

mkdir -p build
phase "build (normal)"
configure_and_build build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ "${MAILER_SKIP_SANITIZE:-0}" != 1 ]; then
  phase "build (ASan+UBSan)"
  configure_and_build build/sanitize -DCMAKE_BUILD_TYPE=Debug -DMAILER_SANITIZE=ON
fi

phase "private PostgreSQL"
export MAILER_PG_DIR="$repo/.mailer/pg-test"
stop_pg() { bash deploy/pg-local.sh stop || true; }
trap stop_pg EXIT
MAILER_TEST_DATABASE_URL=$(bash deploy/pg-local.sh start)
export MAILER_TEST_DATABASE_URL
echo "test server: $MAILER_TEST_DATABASE_URL"
# Tests must never fall back to a developer's own configuration.
unset MAILER_DATABASE_URL MAILER_CONFIG

status=0
# ctest exits 0 when tests skip (GTEST_SKIP, SKIP_RETURN_CODE); --no-tests=error
# makes a filter that matches nothing a failure. Some tests skip on a developer
# machine that lacks their peer (systemd-analyze, Sisimai); in CI
# deploy/install-deps.sh has installed every one of them, so there (CI=true)
# any skipped test fails the run.
run_ctest() {
  local dir=$1 log rc=0 skipped
  phase "tests ($dir)"
  log="$dir/ctest-output.log"
  # shellcheck disable=SC2086
  (cd "$dir" && ctest --output-on-failure --no-tests=error -j"$jobs" ${CTEST_ARGS:-}) 2>&1 |
    tee "$log" || rc=$?
  [ "$rc" = 0 ] || status=1
  skipped=$(grep -E '^[[:space:]]*[0-9]+ - .* \(Skipped\)$' "$log" |
    sed -E 's/^[[:space:]]*[0-9]+ - (.*) \(Skipped\)$/\1/' || true)
  if [ -n "$skipped" ]; then
    if [ "${CI:-}" = true ]; then
      echo "FAILED: tests skipped in CI (deploy/install-deps.sh must provide what they need):"
      status=1
    else
      echo "warning: tests skipped (they run in CI):"
    fi
    printf '%s\n' "$skipped" | sed 's/^/  /'
  fi
  # A suite binary that registers no test would drop out of ctest unnoticed.
  local suite count
  for suite in throttle_tests lists_tests sender_tests app_tests; do
    count=$("$dir/tests/$suite" --gtest_list_tests 2>/dev/null | grep -c '^  ' || true)
    if [ "${count:-0}" -eq 0 ]; then
      echo "FAILED: $dir/tests/$suite holds no test"
      status=1
    fi
  done
}

run_ctest build/release

# The README's first command, run twice as a newcomer would (the second run
# must work too), with the binary just built. Its `mailer serve` is left up
# on purpose; stopped here.
# The quickstart's `quickstart-check:` line: the campaign finished with every
# sendable member (list members less suppressed ones) sent and nothing left in
# flight, the sinks' capacities caused deferrals, the throttle learned a rate,
# and the serve it started answered /healthz with 200.
check_quickstart() {
  python3 - "$1" <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("quickstart-check: ")]
if len(lines) != 1:
    sys.exit("quickstart: expected one quickstart-check line, found %d" % len(lines))
r = json.loads(lines[0].split(": ", 1)[1])
n, problems = r["counts"], []
if r["status"] != "finished":
    problems.append("campaign status %s, not finished" % r["status"])
# Suppressed as the campaign started. A hard bounce reported after the send
# turns a sent delivery into a bounced one: both were accepted.
sendable = r["members"] - r["suppressed"]
accepted = n["sent"] + n["bounced"]
if accepted != sendable or sendable <= 0:
    problems.append("sent %d (+%d bounced later), but the list had %d sendable members "
                    "(%d less %d suppressed)"
                    % (n["sent"], n["bounced"], sendable, r["members"], r["suppressed"]))
if n["skipped"] != r["suppressed"]:
    problems.append("%d deliveries skipped, but %d members were suppressed"
                    % (n["skipped"], r["suppressed"]))
if n["failed"]:
    problems.append("%d deliveries failed" % n["failed"])
if r["members"] < r["imported"]:
    problems.append("the list has %d members, fewer than the %d imported" % (r["members"], r["imported"]))
for state in ("queued", "sending", "deferred"):
    if n[state]:
        problems.append("%d deliveries still %s" % (n[state], state))
if r["deferrals"] <= 0:
    problems.append("no deferrals: the sinks' capacities were never reached")
if not r["learned_rates"] or min(r["learned_rates"].values()) <= 0:
    problems.append("no learned rate in the report: %s" % r["learned_rates"])
if r["healthz"] != "200":
    problems.append("/healthz answered %s, not 200" % r["healthz"])
if problems:
    sys.exit("quickstart check failed:\n  " + "\n  ".join(problems))
PY
}
run_quickstart() {
  phase "quickstart"
  local log round
  for round in 1 2; do
    log="$repo/.mailer/quickstart-$round.log"
    if MAILER_BIN=build/release/app/mailer timeout 600 bash deploy/quickstart.sh >"$log" 2>&1 &&
      check_quickstart "$log"; then
      echo "quickstart run $round: $(grep -E '^campaign [0-9]+: ' "$log")"
    else
      echo "quickstart run $round failed (or took over 600 s):"; tail -n 40 "$log"; status=1
    fi
    if [ -f .mailer/quickstart/serve.pid ]; then
      kill "$(cat .mailer/quickstart/serve.pid)" 2>/dev/null || true
    fi
  done
}
[ "${MAILER_SKIP_QUICKSTART:-0}" = 1 ] || run_quickstart
if [ "${MAILER_SKIP_FUZZ:-0}" != 1 ]; then
  phase "fuzz (${MAILER_FUZZ_SECONDS:-60} s per target)"
  bash tests/fuzz/run.sh || status=1
fi
if [ "${MAILER_SKIP_SANITIZE:-0}" != 1 ]; then
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$repo/tests/lsan.supp}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  run_ctest build/sanitize
fi

phase_end
echo "== phase times"
printf '%s\n' "${phase_log[@]}"
printf '%6d s  total\n' "$SECONDS"

if [ "$status" -ne 0 ]; then
  echo "== FAILED"
else
  echo "== all tests passed"
fi
exit "$status"
