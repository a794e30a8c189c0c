#!/usr/bin/env bash
# tests/layout/check_layout.py can fail: on a copy of the tree with one breach of each kind it must name each,
# and exit 1; on the tree itself it must pass.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$here/check_layout.py" "$root"
mkdir -p "$tmp/src" "$tmp/include"
cp -r "$root/src/." "$tmp/src/"
cp -r "$root/include/." "$tmp/include/"
printf '#include <mpi.h>\n#include "epmoe/comm/mpi.hpp"\n' >"$tmp/src/ops/breach.cpp"
printf 'int f() {\n%s}\n' "$(printf '    int x = 0;\n%.0s' $(seq 70))" >"$tmp/src/base/long.cpp"
out=$(python3 "$here/check_layout.py" "$tmp" || echo "exit $?")
for want in "ops/ includes <mpi.h>" "ops/ includes epmoe/comm/mpi.hpp" "long.cpp:1: function f" "exit 1"; do
    if ! grep -qF "$want" <<<"$out"; then
        echo "FAIL: check_layout.py did not report '$want'; it said:"
        echo "$out"
        exit 1
    fi
done
echo "ok: check_layout.py reports each breach and exits 1"
