#!/usr/bin/env bash
# Compares the bounce parser with Sisimai (Debian's libsisimai-perl, the
# reference bounce reader) over a corpus of messages, one file each, and
# prints how far they agree:
#   recipients  share of the recipients Sisimai finds that the parser finds
#               too (same file, same address; target >= 95 %);
#   kinds       share of those whose kind is the same (target >= 90 %);
#   false hard  share of those the parser calls hard where Sisimai does not
#               (each one would suppress a live subscriber; target < 2 %).
# Sisimai's verdict maps to a kind as the parser's contract says: reason
# feedback, vacation, delivered -> complaint, auto_reply, delivered;
# softbounce 0 -> hard; everything else -> soft. Its placeholder for a
# redacted recipient (an address in .invalid) is not a recipient.
# Exits 1 when a target is missed, 77 when Sisimai is not installed.
#
#   tests/lists/sisimai_compare.sh [BUILD_DIR] [CORPUS_DIR]
#     BUILD_DIR defaults to build/release, CORPUS_DIR to tests/data/bounces.
#   MAILER_SISIMAI_VERBOSE=1 lists every disagreement.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build/release}"
corpus="${2:-$root/tests/data/bounces}"

if ! perl -MSisimai -e 1 2>/dev/null; then
  echo "sisimai_compare: Sisimai is not installed (apt-get install libsisimai-perl)" >&2
  exit 77
fi

cmake --build "$build" --target bounce_parser_bench >/dev/null
tool="$build/tests/bounce_parser_bench"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mapfile -t files < <(find "$corpus" -type f | sort)

"$tool" --json "${files[@]}" >"$work/parser.jsonl"
perl -MSisimai -MJSON::PP -e '
  my $json = JSON::PP->new->canonical(1);
  for my $file (@ARGV) {
    my $list = Sisimai->make($file, delivered => 1) || [];
    for my $d (@$list) {
      print $json->encode({file => $file, recipient => $d->recipient->address,
                           reason => $d->reason, softbounce => $d->softbounce + 0}), "\n";
    }
  }' "${files[@]}" >"$work/sisimai.jsonl"

python3 - "$work/parser.jsonl" "$work/sisimai.jsonl" "${#files[@]}" <<'EOF'
import json, os, sys

def kind_of(s):
    reason = s["reason"]
    if reason == "feedback": return "complaint"
    if reason == "vacation": return "auto_reply"
    if reason == "delivered": return "delivered"
    return "hard" if s["softbounce"] == 0 else "soft"

ours = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "recipient" in r:
        ours[(r["file"], r["recipient"].lower())] = r["kind"]
theirs = {}
for line in open(sys.argv[2]):
    s = json.loads(line)
    address = s["recipient"].lower()
    if address.endswith(".invalid"):
        continue
    theirs[(s["file"], address)] = kind_of(s)

verbose = os.environ.get("MAILER_SISIMAI_VERBOSE") == "1"
found = same = false_hard = 0
for key, kind in sorted(theirs.items()):
    mine = ours.get(key)
    if mine is None:
        if verbose: print(f"  missed   {os.path.basename(key[0])}: {key[1]} (sisimai {kind})")
        continue
    found += 1
    if mine == kind:
        same += 1
    else:
        if mine == "hard": false_hard += 1
        if verbose: print(f"  kind     {os.path.basename(key[0])}: {key[1]} parser {mine}, sisimai {kind}")
extra = sum(1 for key in ours if key not in theirs)
total = len(theirs)
def pct(n, d): return 100.0 * n / d if d else 100.0
r, k, h = pct(found, total), pct(same, found), pct(false_hard, found)
print(f"corpus: {sys.argv[3]} messages; Sisimai recipients: {total}; parser recipients: {len(ours)} ({extra} Sisimai does not report)")
print(f"recipients: {found}/{total} = {r:.1f} % (target >= 95 %)")
print(f"kinds:      {same}/{found} = {k:.1f} % (target >= 90 %)")
print(f"false hard: {false_hard}/{found} = {h:.1f} % (target < 2 %)")
sys.exit(0 if r >= 95 and k >= 90 and h < 2 else 1)
EOF
