#!/usr/bin/env bash
# The layers read top to bottom: throttle/ depends on nothing of ours,
# sender/ and lists/ on throttle/ (and lists/ on sender/'s resolver), and
# only app/ wires them to the database and the command line. A lower layer
# that includes a header of a higher one fails here, naming the line.
#   tests/layers_test.sh [SOURCE_DIR]
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
status=0
check() {  # check DIR FORBIDDEN_PREFIX...
  local dir=$1; shift
  local prefix hits
  for prefix in "$@"; do
    hits=$(grep -rnE "^[[:space:]]*#[[:space:]]*include[[:space:]]*\"$prefix/" "$root/$dir" || true)
    if [ -n "$hits" ]; then
      echo "$dir/ must not include $prefix/ headers:" >&2
      echo "$hits" | sed "s|^$root/|  |" >&2
      status=1
    fi
  done
}
check throttle app sender lists
check sender app lists
check lists app
[ "$status" = 0 ] && echo "layers: throttle/ <- sender/, lists/ <- app/: no include runs upward"
exit "$status"
