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
#   tests/lists/sisimai_compare.sh [BUILD_DIR] [CORPUS_DIR...]
#     BUILD_DIR defaults to build/release; the corpora to tests/data/bounces
#     (samples of many MTAs' and providers' formats) and
#     tests/data/bounces-mta (bounces written by real MTAs on loopback, made
#     by tests/lists/bounce_corpus/generate.sh). Messages are the *.eml files
#     under each directory.
#   MAILER_SISIMAI_VERBOSE=1 lists every disagreement.
#   MAILER_SISIMAI_MIN_RECIPIENTS=N fails when Sisimai finds fewer (default 1).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build/release}"
shift || true
corpora=("$@")
((${#corpora[@]})) || corpora=("$root/tests/data/bounces" "$root/tests/data/bounces-mta")

if ! perl -MSisimai -e 1 2>/dev/null; then
  echo "sisimai_compare: Sisimai is not installed (apt-get install libsisimai-perl)" >&2
  exit 77
fi

cmake --build "$build" --target bounce_parser_bench >/dev/null
tool="$build/tests/bounce_parser_bench"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mapfile -t files < <(find "${corpora[@]}" -type f -name '*.eml' | sort)

"$tool" --json "${files[@]}" >"$work/parser.jsonl"
perl -MSisimai -MJSON::PP -e '
  my $json = JSON::PP->new->ascii->canonical(1);
  for my $file (@ARGV) {
    my $list = Sisimai->make($file, delivered => 1) || [];
    for my $d (@$list) {
      print $json->encode({file => $file, recipient => $d->recipient->address,
                           reason => $d->reason, softbounce => $d->softbounce + 0,
                           command => $d->smtpcommand // "",
                           diagnostic => $d->diagnosticcode // ""}), "\n";
    }
  }' "${files[@]}" >"$work/sisimai.jsonl"

python3 - "$work/parser.jsonl" "$work/sisimai.jsonl" "${files[@]}" <<'EOF'
import json, os, re, sys

def kind_of(s):
    reason = s["reason"]
    if reason == "feedback": return "complaint"
    if reason == "vacation": return "auto_reply"
    if reason == "delivered": return "delivered"
    return "hard" if s["softbounce"] == 0 else "soft"

def squash(text):
    return re.sub(r"[^a-z0-9@.]+", " ", text.lower()).strip()

ours = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "recipient" in r:
        ours[(r["file"], r["recipient"].lower())] = r
theirs = {}
for line in open(sys.argv[2]):
    s = json.loads(line)
    address = s["recipient"].lower()
    if address.endswith(".invalid"):
        continue
    theirs[(s["file"], address)] = s
files = sys.argv[3:]

# Where Sisimai 4.25 demonstrably misreads a report (and the reply the peer
# gave confirms it, see peer_confirms), a disagreement is listed under its
# cause and left out of the false-hard share (it still counts
# against the kinds share):
#   other's diagnostic  in a report on several recipients, Sisimai's
#                       diagnostic for this one holds the reply another
#                       recipient got (its Postfix, Exim and Sendmail readers
#                       pair the notice's lines up wrongly or join them) and
#                       it classifies by that;
#   RCPT not seen       Courier 1.0 writes its transcript " >>> RCPT TO:<a>"
#                       with a leading space, which Sisimai's Courier reader
#                       does not take for a command; without a command it
#                       calls a refusal in user-unknown words "filtered".
# A misread also needs the truth on its side. Each message of the MTA corpus
# was refused by tests/lists/bounce_corpus/peer.py, which answered a recipient
# rNN.… with rule NN of the rules.tsv kept beside the message (stage, reply):
# a disagreement counts as Sisimai's misread only where that reply is the one
# the parser quotes for the recipient (and, for "RCPT not seen", came at RCPT).
rules_by_dir = {}
def peer_rule(file, address):
    d = os.path.dirname(file)
    if d not in rules_by_dir:
        rules = []
        path = os.path.join(d, "rules.tsv")
        if os.path.exists(path):
            for line in open(path, encoding="utf-8"):
                line = line.rstrip("\n")
                if line and not line.startswith("#"):
                    rules.append(tuple(line.split("\t", 1)))
        rules_by_dir[d] = rules
    m = re.match(r"^r(\d+)[.+]", address)
    rules = rules_by_dir[d]
    return rules[int(m.group(1))] if m and int(m.group(1)) < len(rules) else None

def peer_confirms(key, stage=None):
    rule = peer_rule(*key)
    if not rule or (stage and rule[0] != stage):
        return False
    reply = re.sub(r"^(\d{3})-", r"\1 ", rule[1].replace("{rcpt}", key[1]))
    # the reply's start: an MTA wraps a long reply or drops its continuation
    return squash(reply)[:48] in squash(ours[key].get("diagnostic", ""))

def misread(key, s):
    cause = misread_cause(key, s)
    if cause == "RCPT not seen":
        return cause if peer_confirms(key, "rcpt") else None
    return cause if cause and peer_confirms(key) else None

def misread_cause(key, s):
    file, address = key
    mine = ours[key]
    theirs_diag = squash(s.get("diagnostic", ""))
    mine_diag = squash(mine.get("diagnostic", ""))
    if theirs_diag and mine_diag:
        for (f, a), other in ours.items():
            other_diag = squash(other.get("diagnostic", ""))
            if (f == file and a != address and other_diag and other_diag in theirs_diag
                    and other_diag not in mine_diag):
                return "other's diagnostic"
    if s["reason"] == "filtered" and not s.get("command"):
        text = open(file, encoding="latin-1").read()
        if re.search(r"^\s*>>> RCPT TO:<" + re.escape(address) + r">\s*\n\s*<<< 5", text,
                     re.IGNORECASE | re.MULTILINE):
            return "RCPT not seen"
    return None

verbose = os.environ.get("MAILER_SISIMAI_VERBOSE") == "1"
def source(path):  # the corpus directory, or the MTA's under bounces-mta
    parent = os.path.basename(os.path.dirname(path))
    return parent if parent != "bounces" else "samples"
def pct(n, d): return 100.0 * n / d if d else 100.0
found = same = false_hard = 0
misreads = {}
by = {}
for key, s in sorted(theirs.items()):
    kind = kind_of(s)
    mine = ours.get(key, {}).get("kind")
    row = by.setdefault(source(key[0]), [0, 0, 0, 0, 0])
    row[0] += 1
    if mine is None:
        if verbose: print(f"  missed   {key[0]}: {key[1]} (sisimai {kind})")
        continue
    found += 1
    row[1] += 1
    if mine == kind:
        same += 1
        row[2] += 1
        continue
    cause = misread(key, s) if mine == "hard" else None
    if cause:
        misreads[cause] = misreads.get(cause, 0) + 1
        row[4] += 1
    elif mine == "hard":
        false_hard += 1
        row[3] += 1
    if verbose:
        print(f"  kind     {key[0]}: {key[1]} parser {mine}, sisimai {kind} ({s['reason']})"
              + (f" [Sisimai misread: {cause}]" if cause else ""))
extra = sum(1 for key in ours if key not in theirs)
total = len(theirs)
messages = {}
for f in files:
    messages[source(f)] = messages.get(source(f), 0) + 1
print(f"{'source':10} {'messages':>8} {'sisimai':>8} {'found':>7} {'kinds':>7} {'false hard':>10} {'misread':>7} {'parser only':>11}")
for name in sorted(messages):
    t, f_, k_, h_, m_ = by.get(name, [0, 0, 0, 0, 0])
    only = sum(1 for key in ours if key not in theirs and source(key[0]) == name)
    print(f"{name:10} {messages[name]:8} {t:8} {pct(f_, t):6.1f}% {pct(k_, f_):6.1f}% {pct(h_, f_):9.1f}% {m_:7} {only:11}")
r, k, h = pct(found, total), pct(same, found), pct(false_hard, found)
misread_total = sum(misreads.values())
print(f"corpus: {len(files)} messages; Sisimai recipients: {total}; parser recipients: {len(ours)} ({extra} Sisimai does not report)")
print(f"recipients: {found}/{total} = {r:.1f} % (target >= 95 %)")
print(f"kinds:      {same}/{found} = {k:.1f} % (target >= 90 %)")
print(f"false hard: {false_hard}/{found} = {h:.1f} % (target < 2 %); "
      f"counting Sisimai's misreads too: {false_hard + misread_total}/{found} = {pct(false_hard + misread_total, found):.1f} %")
for cause, n in sorted(misreads.items()):
    print(f"  hard where Sisimai misreads the report ({cause}) and the peer's reply confirms the parser: {n}")
minimum = int(os.environ.get("MAILER_SISIMAI_MIN_RECIPIENTS", "1"))
if total < minimum:
    print(f"too small a corpus: {total} Sisimai recipients, at least {minimum} wanted")
    sys.exit(1)
sys.exit(0 if r >= 95 and k >= 90 and h < 2 else 1)
EOF
