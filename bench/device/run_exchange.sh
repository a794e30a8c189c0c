#!/usr/bin/env bash
# On the device (16 Xeon cores, Ubuntu 24.04, Open MPI 4.1.6): the layer of bench/real16.sh (d_model 1024, d_ff
# 3584, 32 experts, top-2, synthetic tokens, 8 steps, 2048 tokens a core) with the token exchange through MPI
# (resources.exchange=mpi) and through the shared-memory window (shm), at RANKS (default 4 8 16) ranks of one
# thread and 8 ranks of 2 threads (expert tasks), FP32 and BF16, ranks bound by epmoe (resources.bind=core).
# build-dev/ (gitignored, carried): bin/epmoe (this Debian build), libs.tar.xz. Run from the repo root with OUT
# set (the device tool's $OUT); prints a table of layer tokens/s (median, min-max over steps 2-8), the 1 x 1
# run's tokens/s times the cores for scale, and the mean step's dispatch, expert and combine seconds.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
mpirun --version | head -1 >>$OUT/cpu.txt
layer=(--set model.d_model=1024 --set model.d_ff=3584 --set model.num_experts=32 --set model.top_k=2
       --set model.num_layers=1 --energy-source none -q --steps 8 --set resources.bind=core
       --set workload.skew="${SKEW:-1.2}")
run() {  # NAME RANKS THREADS EXCHANGE DTYPE
    local name=$1 np=$2 t=$3 exchange=$4 dtype=$5
    mpirun --allow-run-as-root -np "$np" --bind-to none "$d/bin/epmoe" run "${layer[@]}" \
        --tokens-per-rank $((2048 * t)) --set resources.threads_per_rank="$t" --set resources.exchange="$exchange" \
        --set compute.dtype="$dtype" --out "/tmp/ex/$name" >"$OUT/$name.log" 2>&1 || echo "$name failed" >&2
    cp "/tmp/ex/$name/metrics.jsonl" "$OUT/$name.metrics.jsonl" 2>/dev/null || true
}
rm -rf /tmp/ex && mkdir -p /tmp/ex  # a warm machine keeps the last call's runs
for dtype in ${DTYPES:-fp32 bf16}; do
    run "$dtype-1x1-mpi" 1 1 mpi "$dtype"
    for p in ${RANKS:-4 8 16}; do
        for exchange in mpi shm; do run "$dtype-${p}x1-$exchange" "$p" 1 "$exchange" "$dtype"; done
    done
    for exchange in mpi shm; do run "$dtype-8x2-$exchange" 8 2 "$exchange" "$dtype"; done
done
python3 - "$OUT" <<'PY' | tee "$OUT/exchange.md"
import glob, json, os, statistics, sys
out = sys.argv[1]
print("| run | layer tokens/s (median, min-max) | vs cores x (1 x 1) | dispatch s | expert s | combine s |")
print("|---|---|---|---|---|---|")
base = {}
for path in sorted(glob.glob(out + "/*.metrics.jsonl"), key=os.path.getmtime):
    name = os.path.basename(path)[:-len(".metrics.jsonl")]
    dtype, split, _ = name.split("-")
    cores = int(split.split("x")[0]) * int(split.split("x")[1])
    lines = [json.loads(l) for l in open(path)][1:]
    rate = [l["tokens"] / (l["step_time_s"] - l["time_breakdown_s"]["coordinator"]) for l in lines]
    br = {k: statistics.mean(l["time_breakdown_s"][k] for l in lines) for k in ("dispatch", "expert", "combine")}
    if split == "1x1":
        base[dtype] = statistics.median(rate)
    scale = statistics.median(rate) / (cores * base[dtype]) if dtype in base else float("nan")
    print(f"| {name} | {statistics.median(rate):,.0f} ({min(rate):,.0f}-{max(rate):,.0f}) | {scale:.2f} | "
          f"{br['dispatch']:.3f} | {br['expert']:.3f} | {br['combine']:.3f} |")
PY
cat $OUT/cpu.txt
