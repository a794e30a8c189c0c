#!/usr/bin/env bash
# Weak-scaling study of epmoe under SimGrid's SMPI (`epmoe simulate`): 8 -> 1024 ranks, 4 ranks per node, on a
# 100 Gb/s fat-tree, E = 2 x ranks experts, a skewed synthetic workload, for three routing set-ups:
#   none        plain top-k, contiguous placement
#   aux_free    DeepSeek-V3 loss-free balancing, u = 0.05 / E (5 % of a mean score per step)
#   replicated  plain top-k, the ranks/4 hottest experts of the `none` run get one more copy each
# Writes bench/SCALE.md (table + bench/scale.png, drawn with matplotlib) from the results directories under OUT.
# Usage: bench/scale.sh [RANKS...]   (default 8 16 32 64 128 256 512 1024; SCALE.md has what it cost)
# Environment: EPMOE (default build/epmoe; build-smpi/epmoe must exist beside build/), OUT (default
# /tmp/epmoe-scale), STEPS (3), GFLOPS (the expert GEMM rate; default: measured once by the first run).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
EPMOE=${EPMOE:-$root/build/epmoe}
OUT=${OUT:-/tmp/epmoe-scale}
STEPS=${STEPS:-3}
ranks_list=("$@")
[ "${#ranks_list[@]}" -gt 0 ] || ranks_list=(8 16 32 64 128 256 512 1024)
mkdir -p "$OUT"
[ -x /usr/bin/time ] || { echo "scale.sh: needs /usr/bin/time (apt-get install time) for the simulator's cost" >&2; exit 2; }
# The figure is matplotlib's (Debian's python3-matplotlib, which a python3 earlier on PATH may not see): checked
# before the study, not after it.
python=python3
"$python" -c "import matplotlib" 2>/dev/null || python=/usr/bin/python3
"$python" -c "import matplotlib" 2>/dev/null ||
    { echo "scale.sh: needs matplotlib for bench/scale.png (apt-get install python3-matplotlib)" >&2; exit 2; }
export OPENBLAS_NUM_THREADS=1

# Small per-rank sizes keep the host work of 1024 simulated ranks (gate GEMM ~ tokens x d_model x E on one
# core) within minutes; expert FLOPs and bytes on the wire are modelled, so they cost nothing to simulate.
common=(-q --platform fat-tree --bandwidth 100Gbps --latency 1us --ranks-per-node 4 --steps "$STEPS"
        --tokens-per-rank 64 --energy-source none
        --set model.num_layers=1 --set model.d_model=128 --set model.d_ff=512 --set model.top_k=2
        --set workload.skew=1.2 --set workload.num_clusters=64 --set routing.fidelity_sample_every=0)
start_all=$SECONDS
for p in "${ranks_list[@]}"; do
    e=$((2 * p))
    gflops=${GFLOPS:-0}
    runs=(none aux_free replicated)
    for run in "${runs[@]}"; do
        dir=$OUT/p$p-$run
        args=(--ranks "$p" --set "model.num_experts=$e" --out "$dir" --gflops-per-core "$gflops")
        case $run in
            none) args+=(--policy none) ;;
            aux_free) args+=(--policy aux_free --set "policy.aux_free.u=$(python3 -c "print(0.05 / $e)")") ;;
            replicated) args+=(--policy none --placement replicated --set "placement.profile=$OUT/p$p-none"
                               --set "placement.replicas=$((p / 4 > 0 ? p / 4 : 1))") ;;
        esac
        # The simulator's own cost: wall seconds and peak RSS (KiB, of smpirun's process tree's largest member).
        /usr/bin/time -f "%e %M" -o "$dir.cost" "$EPMOE" simulate "${common[@]}" "${args[@]}" >"$dir.log" 2>&1 || {
            echo "scale.sh: $run at $p ranks failed, see $dir.log" >&2
            exit 1
        }
        read -r wall rss <"$dir.cost"
        echo "$wall $rss $(cut -d' ' -f1 /proc/loadavg)" >"$dir.cost"  # + the 1-minute load average
        echo "$p ranks, $run: $wall s, max RSS $((rss / 1024)) MiB" | tee -a "$OUT/wall.txt"
        # Every later run uses the rate the first run measured, so all points share one calibration.
        [ -n "${GFLOPS:-}" ] || GFLOPS=$(python3 -c \
            "import json,sys; print(json.load(open(sys.argv[1]))['platform']['gflops_per_core'])" "$dir/summary.json")
    done
done
echo "total: $((SECONDS - start_all)) s" | tee -a "$OUT/wall.txt"
"$python" "$here/scale_report.py" "$OUT" "$here/SCALE.md" "$here/scale.png" "$((SECONDS - start_all))" "${ranks_list[@]}"
