#!/usr/bin/env bash
# The 16-rank measurements of bench/SCALE-REAL.md, on a machine of 16 cores with Open MPI and PyTorch, from an
# epmoe built elsewhere (Debian 12) and carried with the shared libraries it needs:
#   bench/real16.sh BIN LIBS OUT
#     BIN   a folder holding epmoe and bench_dispatch (Open MPI 4.1 build; the machine's libmpi.so.40 is used)
#     LIBS  a folder of the other libraries (libdnnl, libopenblas, libhwloc, libboost_program_options, ...)
#     OUT   where every raw output goes (JSON lines, results directories' summaries, logs)
# Runs, one rank a core (--bind-to core): weak scaling of one layer (d_model 1024, d_ff 3584, 32 experts,
# top-2, 2048 tokens a rank) at 1, 2, 4, 8, 16 ranks in FP32 and BF16; bench_dispatch (dispatch + combine
# against bare MPI_Alltoallv) at 4, 8, 16 ranks; and Hugging Face's MixtralSparseMoeBlock in the machine's
# PyTorch (bench/peer_torch.py, its thread count searched) against epmoe at 16 ranks on the same checkpoint and
# tokens (32768 a step, a new batch every step), FP32 and BF16. bench/real16_report.py writes SCALE-REAL.md.
set -euo pipefail
bin=$1 libs=$2 out=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$out"
export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
start=$SECONDS
say() { printf 'real16: [%3d s] %s\n' $((SECONDS - start)) "$*" | tee -a "$out/log.txt" >&2; }
mpirun=(mpirun --bind-to core --map-by core -x LD_LIBRARY_PATH -x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS)
layer=(--set model.d_model=1024 --set model.d_ff=3584 --set model.num_experts=32 --set model.top_k=2
       --set model.num_layers=1 --energy-source none -q)

{ lscpu; nproc; mpirun --version; python3 -c 'import torch; print("torch", torch.__version__, torch.__config__.show())'; } \
    >"$out/machine.txt" 2>&1 || true
"${mpirun[@]}" -n 16 "$bin/epmoe" info --json >"$out/info16.json" 2>"$out/info16.err" || true

for dtype in fp32 bf16; do
    for p in 1 2 4 8 16; do
        say "weak scaling: $dtype, $p ranks"
        "${mpirun[@]}" -n "$p" "$bin/epmoe" run "${layer[@]}" --tokens-per-rank 2048 --steps 8 \
            --set compute.dtype=$dtype --out "$out/weak-$dtype-$p" >"$out/weak-$dtype-$p.log" 2>&1 || say "  failed"
    done
done

for p in 4 8 16; do
    say "dispatch: bench_dispatch at $p ranks"
    "${mpirun[@]}" -n "$p" "$bin/bench_dispatch" --reps 20 --tokens 64,2048 >"$out/dispatch-$p.jsonl" 2>"$out/dispatch-$p.err" \
        || say "  failed"
done

say "peer: checkpoint (32 experts) and a 6-step uniform workload of 32768 tokens"
peer=(python3 "$here/peer_torch.py")
"${peer[@]}" make "$out/peer" --experts 32 --tokens 32768 --expected "" --steps 7 --workloads uniform
for dtype in fp32 bf16; do
    say "peer: $dtype, torch threads 8 and 16"
    "${peer[@]}" search "$out/peer" --tokens 32768 --dtype $dtype --workload fixed --reps 2 --blas-threads 1 \
        --torch-threads 8,16 >"$out/peer_search_$dtype.json"
    threads=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["best"]["32768"]["torch_threads"])' \
        "$out/peer_search_$dtype.json")
    say "peer: $dtype at $threads torch threads, 6 steps"
    OMP_NUM_THREADS=$threads "${peer[@]}" time "$out/peer" --tokens 32768 --dtype $dtype --workload uniform \
        --threads "$threads" --reps 6 >"$out/peer_${dtype}_32768.json"
    say "epmoe: 16 ranks, $dtype, the peer's tokens"
    "${mpirun[@]}" -n 16 "$bin/epmoe" run --model "$out/peer/model" --input "$out/peer/uniform_32768.safetensors" \
        --steps 7 --energy-source none -q --set compute.dtype=$dtype --out "$out/peer16-$dtype" \
        >"$out/peer16-$dtype.log" 2>&1 || say "  failed"
done
rm -rf "$out/peer"  # 1.4 GB of checkpoint and tokens: not for the way back
say "done"
