#!/usr/bin/env bash
# On the device (16 Xeon cores, Ubuntu 24.04, Open MPI 4.1.6): the layer of bench/real16.sh (d_model 1024, d_ff
# 3584, 32 experts, top-2, synthetic tokens, 8 steps) with the 16 cores split as ranks x threads, the threads of a
# rank sharing its experts as tasks (resources.expert_threads=tasks) or inside each GEMM (gemm), FP32 and BF16;
# each rank bound by epmoe (resources.bind=core) to threads_per_rank cores. 2048 tokens a core. build-dev/
# (gitignored, carried): bin/epmoe (this Debian build), libs.tar.xz (its libraries, dpkg -x'd). Run from the repo
# root with OUT set (the device tool's $OUT); prints a table of layer tokens/s, the mean step's expert and
# combine seconds, and the 1 x 1 run's tokens/s times 16 for scale. SKEW: workload.skew (default 1.2, the synthetic
# workload's Zipf popularity of its 32 clusters; 0: every cluster alike); SPLITS: the ranks x threads to run.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
mpirun --version | head -1 >>$OUT/cpu.txt
layer=(--set model.d_model=1024 --set model.d_ff=3584 --set model.num_experts=32 --set model.top_k=2
       --set model.num_layers=1 --energy-source none -q --steps 8 --set resources.bind=core
       --set workload.skew="${SKEW:-1.2}")
run() {  # NAME RANKS THREADS SPLIT DTYPE
    local name=$1 np=$2 t=$3 split=$4 dtype=$5
    mpirun --allow-run-as-root -np "$np" --bind-to none "$d/bin/epmoe" run "${layer[@]}" \
        --tokens-per-rank $((2048 * t)) --set resources.threads_per_rank="$t" --set resources.expert_threads="$split" \
        --set compute.dtype="$dtype" --out "/tmp/th/$name" >"$OUT/$name.log" 2>&1 || echo "$name failed" >&2
    [ -f "/tmp/th/$name/summary.json" ] || return 0
    cp "/tmp/th/$name/summary.json" "$OUT/$name.summary.json" 2>/dev/null
    cp "/tmp/th/$name/metrics.jsonl" "$OUT/$name.metrics.jsonl" 2>/dev/null
}
rm -rf /tmp/th && mkdir -p /tmp/th  # a warm machine keeps the last call's runs
for dtype in fp32 bf16; do
    run "$dtype-1x1" 1 1 tasks "$dtype"
    run "$dtype-16x1" 16 1 tasks "$dtype"
    for split in ${SPLITS:-4x4-tasks 2x8-tasks 1x16-tasks 4x4-gemm 2x8-gemm 1x16-gemm}; do
        np=${split%%x*} rest=${split#*x}
        run "$dtype-$split" "$np" "${rest%-*}" "${rest#*-}" "$dtype"
    done
done
python3 - "$OUT" <<'PY' | tee "$OUT/threads.md"
import glob, json, os, statistics, sys
out = sys.argv[1]
print("| run | layer tokens/s (median, min-max) | vs 16 x (1 x 1) | expert s | combine s |")
print("|---|---|---|---|---|")
base = {}
for path in sorted(glob.glob(out + "/*.metrics.jsonl"), key=lambda p: (p.split("/")[-1].split("-")[0], os.path.getmtime(p))):
    name = os.path.basename(path)[:-len(".metrics.jsonl")]
    lines = [json.loads(l) for l in open(path)][1:]
    rate = [l["tokens"] / (l["step_time_s"] - l["time_breakdown_s"]["coordinator"]) for l in lines]
    br = {k: statistics.mean(l["time_breakdown_s"][k] for l in lines) for k in ("expert", "combine")}
    dtype = name.split("-")[0]
    if name.endswith("-1x1"):
        base[dtype] = statistics.median(rate)
    scale = statistics.median(rate) / (16 * base[dtype]) if dtype in base else float("nan")
    print(f"| {name} | {statistics.median(rate):,.0f} ({min(rate):,.0f}-{max(rate):,.0f}) | {scale:.2f} | "
          f"{br['expert']:.3f} | {br['combine']:.3f} |")
PY
cat $OUT/cpu.txt
