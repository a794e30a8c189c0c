#!/bin/bash
# Builds the safetensors fuzzer straight with clang++ (no CMake configure, no MPI) and runs it for a
# bounded time:   tests/fuzz/run_fuzz.sh [SECONDS=30] [extra libFuzzer flags...]
# New corpus entries go to $EPMOE_FUZZ_BUILD/corpus_work (default build-fuzz/); a crashing input is
# written there as crash-*: fix the bug, then copy the input into tests/fuzz/crashes/ so the unit test
# SafetensorsCorpus replays it in every build.
set -euo pipefail
seconds=${1:-30}
shift || true
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${EPMOE_FUZZ_BUILD:-$root/build-fuzz}
cxx=${CXX_FUZZ:-clang++}
mkdir -p "$build/corpus_work"
"$cxx" -std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root/include" -I"$root/src/io" "$here/fuzz_safetensors.cpp" "$root/src/io/safetensors_parse.cpp" \
    "$root/src/base/dtype.cpp" "$root/src/base/error.cpp" -o "$build/fuzz_safetensors"
dirs=("$build/corpus_work" "$here/corpus")
[ -d "$here/crashes" ] && dirs+=("$here/crashes")
exec "$build/fuzz_safetensors" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
     -dict="$here/safetensors.dict" -artifact_prefix="$build/" -print_final_stats=1 "$@" "${dirs[@]}"
