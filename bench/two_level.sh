#!/usr/bin/env bash
# The token exchange between hosts, flat (one MPI_Alltoallv over every rank) against two-level
# (resources.inter_host = two_level: inside each host, then one message a rank to its counterpart on each other
# host), under SimGrid's SMPI (`epmoe simulate`) at 256 and 1024 ranks, 4 a node, on the fat-tree and the
# dragonfly (100 Gb/s, 1 us links), with bench/scale.sh's layer (E = 2 x ranks, d_model 128, d_ff 512, top-2,
# 64 tokens a rank, the skewed synthetic workload, 3 steps). Writes bench/TWO-LEVEL.md.
#   bench/two_level.sh [OUT [RANKS...]]   (OUT: where the runs go, default a temporary folder; RANKS: 256 1024)
# Needs build/epmoe and build-smpi/epmoe (EPMOE, EPMOE_SMPI_BIN to override).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
EPMOE=${EPMOE:-$root/build/epmoe}
EPMOE_SMPI_BIN=${EPMOE_SMPI_BIN:-$root/build-smpi/epmoe}
OUT=${1:-$(mktemp -d /tmp/epmoe-two-level.XXXXXX)}
shift $(($# > 0 ? 1 : 0))
ranks_list=("${@:-256}")
[ $# -gt 0 ] || ranks_list=(256 1024)
mkdir -p "$OUT"
export OPENBLAS_NUM_THREADS=1
common=(-q --bandwidth 100Gbps --latency 1us --ranks-per-node 4 --steps 3 --tokens-per-rank 64
        --energy-source none --gflops-per-core 100 --set "simulate.binary=$EPMOE_SMPI_BIN"
        --set model.num_layers=1 --set model.d_model=128 --set model.d_ff=512 --set model.top_k=2
        --set workload.skew=1.2 --set workload.num_clusters=64 --set routing.fidelity_sample_every=0)
start=$SECONDS
for ranks in "${ranks_list[@]}"; do
    for platform in fat-tree dragonfly; do
        for level in flat two_level; do
            name=$platform-$ranks-$level
            echo "two_level.sh: [$((SECONDS - start)) s] $name" >&2
            rm -rf "${OUT:?}/$name"
            "$EPMOE" simulate "${common[@]}" --ranks "$ranks" --platform "$platform" \
                --set "model.num_experts=$((2 * ranks))" --set "resources.inter_host=$level" --out "$OUT/$name" \
                >"$OUT/$name.log" 2>&1 || echo "two_level.sh: $name failed, see $OUT/$name.log" >&2
        done
    done
done
python3 "$here/two_level_report.py" "$OUT" "$here/TWO-LEVEL.md" "$((SECONDS - start))"
echo "two_level.sh: wrote $here/TWO-LEVEL.md from $OUT" >&2
