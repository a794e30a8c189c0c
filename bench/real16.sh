#!/usr/bin/env bash
# The 16-rank measurements of bench/SCALE-REAL.md, on a machine of 16 cores with Open MPI and PyTorch, from an
# epmoe built elsewhere (Debian 12) and carried with the shared libraries it needs:
#   bench/real16.sh BIN LIBS OUT [PART...]
#     BIN   a folder holding epmoe and bench_dispatch (Open MPI 4.1 build; the machine's libmpi.so.40 is used)
#     LIBS  a folder of the other libraries (libdnnl, libopenblas, libhwloc, libboost_program_options, ...)
#     OUT   where every raw output goes (JSON lines, results directories' metrics and summaries, logs)
#     PART  what to run (default all, in this order; a part needs the checkpoint `make` wrote into OUT):
#       make     Hugging Face's MixtralSparseMoeBlock checkpoint (d_model 1024, d_ff 3584, 32 experts, top-2;
#                bench/peer_torch.py) and its uniform token files: 2048 x 1, 2, 4, 8, 16 tokens a step, 7 steps
#       weak     weak scaling on those tokens, 2048 a rank: 1, 2, 4, 8, 16 ranks of one thread, the token exchange
#                through MPI (resources.exchange=mpi) and through shared memory (shm: with the ranks of the host
#                sharing each other's row blocks, and without, shm-owner); 8 ranks of 2 threads (expert tasks),
#                4096 tokens a rank; FP32 and BF16 (REAL16_RANKS, default "1 2 4 8 16 8x2", and REAL16_EXCHANGES,
#                default "mpi shm shm-owner", narrow it)
#       peer     the block in the machine's PyTorch at its best thread count (8 or 16, searched) on the 32768 tokens
#                of the 16-rank runs, FP32 and BF16
#       ceiling  the machine's own limit on weak scaling: 16 independent one-rank runs at once (no exchange at all,
#                each its own MPI singleton pinned to one core by taskset) on the 2048-token file, FP32 and BF16
#       rankwork a 16 x 1 rank's own work (the layer's 2 experts of 2048 rows each: a synthetic layer of 2 experts,
#                top-2, 2048 tokens) alone on one core, then 16 such runs at once: the ceiling for 16 ranks with
#                their larger GEMMs (the 1-rank layer runs 32 experts of 128 rows), FP32 and BF16
#       pairs    the 1 x 1 and 16 x 1 runs of weak (shm) again, in turn, REAL16_PAIRS times (default 3) for each dtype:
#                a ratio from runs seconds apart, where the machine's load drifts over minutes
#       variants the pairs of FP32 runs (1 x 1, then 16 x 1) for each way of running onednn/fp32's packed weights, in
#                rounds (REAL16_PAIRS): whole (whole matrices, the default), panels256 and panels1024
#                (compute.weight_panel_kib), off (compute.pack_weights=off); REAL16_VARIANTS narrows them
#       skewed   weak scaling on the synthetic workload (Zipf-popular clusters: hot experts make a hot rank) at 1
#                and 16 ranks
#       dispatch bench_dispatch (dispatch + combine against bare MPI_Alltoallv) at 4, 8, 16 ranks
# REAL16_SET: more epmoe options for every epmoe run (e.g. "--set compute.pack_weights=off").
# One rank a core: mpirun --bind-to core (ranks of 2 threads: epmoe binds them, resources.bind=core). 16 steps
# (the token files' 7 batches in turn),
# step 0 left out. bench/real16_report.py writes SCALE-REAL.md from OUT.
set -euo pipefail
bin=$1 libs=$2 out=$3
shift 3
parts=${*:-make weak pairs ceiling rankwork peer skewed dispatch}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$out"
export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
start=$SECONDS
say() { printf 'real16: [%3d s] %s\n' $((SECONDS - start)) "$*" | tee -a "$out/log.txt" >&2; }
mpirun=(mpirun -x LD_LIBRARY_PATH -x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS)
one_a_core=(--bind-to core --map-by core)
quiet=(--energy-source none -q --steps 16)
peer=(python3 "$here/peer_torch.py")

# epmoe run NAME RANKS THREADS [ARGS...]: results in OUT/NAME/ (metrics and summary only), log in OUT/NAME.log.
run() {
    local name=$1 np=$2 threads=$3
    shift 3
    local bind=("${one_a_core[@]}")
    [ "$threads" -gt 1 ] && bind=(--bind-to none) && set -- "$@" --set resources.bind=core
    "${mpirun[@]}" "${bind[@]}" -n "$np" "$bin/epmoe" run "${quiet[@]}" --set resources.threads_per_rank="$threads" \
        "$@" ${REAL16_SET:-} --out "/tmp/real16/$name" >"$out/$name.log" 2>&1 || say "  $name failed"
    mkdir -p "$out/$name"
    cp /tmp/real16/"$name"/{metrics.jsonl,summary.json} "$out/$name/" 2>/dev/null || true
    rm -rf "/tmp/real16/$name"
}

part_make() {
    say "make: checkpoint (32 experts) and uniform tokens, 2048-32768 a step, 7 steps"
    "${peer[@]}" make "$out/peer" --experts 32 --tokens 2048,4096,8192,16384,32768 --expected "" --steps 7 \
        --workload-tokens 2048,4096,8192,16384,32768 --workloads uniform
}

# The settings of an exchange name: mpi, shm (its default work sharing: ranks of the host take each other's row
# blocks), shm-owner (shm, each expert on its owner only: resources.work_sharing=none).
exchange_args() {
    case $1 in
        shm-owner) echo --set resources.exchange=shm --set resources.work_sharing=none ;;
        *) echo --set resources.exchange="$1" ;;
    esac
}

part_weak() {
    local layouts=${REAL16_RANKS:-1 2 4 8 16 8x2} exchanges=${REAL16_EXCHANGES:-mpi shm shm-owner} layout exchange
    for dtype in fp32 bf16; do
        local model=(--model "$out/peer/model" --set compute.dtype=$dtype)
        for layout in $layouts; do
            local p=${layout%x*} threads=1
            [ "$layout" != "$p" ] && threads=${layout#*x}
            for exchange in $exchanges; do
                [ "$p" -eq 1 ] && [ "$exchange" != shm ] && continue
                [ "$threads" -gt 1 ] && [ "$exchange" = shm-owner ] && continue
                say "weak: $dtype, $p ranks x $threads threads, exchange $exchange"
                run "weak-$dtype-${p}x$threads-$exchange" "$p" "$threads" "${model[@]}" $(exchange_args $exchange) \
                    --input "$out/peer/uniform_$((2048 * p * threads)).safetensors"
            done
        done
    done
}

part_pairs() {
    local round
    for round in $(seq 1 "${REAL16_PAIRS:-3}"); do
        for dtype in fp32 bf16; do
            for p in 1 16; do
                say "pairs: round $round, $dtype, $p ranks"
                run "pair$round-$dtype-${p}x1" "$p" 1 --model "$out/peer/model" --set compute.dtype=$dtype \
                    --set resources.exchange=shm --input "$out/peer/uniform_$((2048 * p)).safetensors"
            done
        done
    done
}

# The options of a variant name (part variants).
variant_args() {
    case $1 in
        whole) ;;
        panels*) echo --set compute.weight_panel_kib="${1#panels}" ;;
        off) echo --set compute.pack_weights=off ;;
        *) say "unknown variant $1 (whole, panels<KiB>, off)"; exit 2 ;;
    esac
}

part_variants() {
    local round variant p
    for round in $(seq 1 "${REAL16_PAIRS:-3}"); do
        for variant in ${REAL16_VARIANTS:-whole panels256 panels1024 off}; do
            for p in 1 16; do
                say "variants: round $round, fp32 $variant, $p ranks"
                run "variant$round-$variant-${p}x1" "$p" 1 --model "$out/peer/model" --set compute.dtype=fp32 \
                    --set compute.backend=onednn $(variant_args "$variant") --set resources.exchange=shm \
                    --input "$out/peer/uniform_$((2048 * p)).safetensors"
            done
        done
    done
}

# singleton NAME CORE ARGS...: one epmoe run of one rank (an MPI singleton) pinned to CORE; results in OUT/NAME/
# (metrics only), log in OUT/NAME.log.
singleton() {
    local name=$1 core=$2
    shift 2
    taskset -c "$core" "$bin/epmoe" run "${quiet[@]}" "$@" ${REAL16_SET:-} --out "/tmp/real16/$name" >"$out/$name.log" 2>&1 ||
        say "  $name failed"
    mkdir -p "$out/$name"
    cp "/tmp/real16/$name/metrics.jsonl" "$out/$name/" 2>/dev/null || true
    rm -rf "/tmp/real16/$name"
}

# sixteen_at_once PREFIX ARGS...: 16 singletons started together, one a core: OUT/PREFIX-0 .. PREFIX-15.
sixteen_at_once() {
    local prefix=$1 core
    shift
    for core in $(seq 0 15); do singleton "$prefix-$core" "$core" "$@" & done
    wait
}

part_ceiling() {
    for dtype in fp32 bf16; do
        say "ceiling: $dtype, 16 one-rank runs at once"
        sixteen_at_once "ceiling-$dtype" --model "$out/peer/model" --set compute.dtype=$dtype \
            --input "$out/peer/uniform_2048.safetensors"
    done
}

part_rankwork() {
    local layer=(--set model.d_model=1024 --set model.d_ff=3584 --set model.num_experts=2 --set model.top_k=2
                 --set model.num_layers=1 --tokens-per-rank 2048)
    for dtype in fp32 bf16; do
        say "rankwork: $dtype, a 16 x 1 rank's experts alone, then 16 at once"
        singleton "rankwork-$dtype-alone" 0 "${layer[@]}" --set compute.dtype=$dtype
        sixteen_at_once "rankwork-$dtype" "${layer[@]}" --set compute.dtype=$dtype
    done
}

part_peer() {
    for dtype in fp32 bf16; do
        say "peer: $dtype, torch threads 8 and 16"
        "${peer[@]}" search "$out/peer" --tokens 32768 --dtype $dtype --workload fixed --reps 2 --blas-threads 1 \
            --torch-threads 8,16 >"$out/peer_search_$dtype.json"
        threads=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["best"]["32768"]["torch_threads"])' \
            "$out/peer_search_$dtype.json")
        say "peer: $dtype at $threads torch threads, 6 steps"
        OMP_NUM_THREADS=$threads "${peer[@]}" time "$out/peer" --tokens 32768 --dtype $dtype --workload uniform \
            --threads "$threads" --reps 6 >"$out/peer_${dtype}_32768.json"
    done
}

part_skewed() {
    local layer=(--set model.d_model=1024 --set model.d_ff=3584 --set model.num_experts=32 --set model.top_k=2
                 --set model.num_layers=1 --tokens-per-rank 2048)
    for dtype in fp32 bf16; do
        for p in 1 16; do
            say "skewed: $dtype, $p ranks"
            run "skewed-$dtype-${p}x1" "$p" 1 "${layer[@]}" --set compute.dtype=$dtype
        done
    done
}

part_dispatch() {
    for p in 4 8 16; do
        say "dispatch: bench_dispatch at $p ranks"
        "${mpirun[@]}" "${one_a_core[@]}" -n "$p" "$bin/bench_dispatch" --reps 20 --tokens 64,2048 \
            >"$out/dispatch-$p.jsonl" 2>"$out/dispatch-$p.err" || say "  failed"
    done
}

{ lscpu; nproc; mpirun --version; python3 -c 'import torch; print("torch", torch.__version__, torch.__config__.show())'; } \
    >"$out/machine.txt" 2>&1 || true
"${mpirun[@]}" "${one_a_core[@]}" -n 16 "$bin/epmoe" info --json >"$out/info16.json" 2>"$out/info16.err" || true
for part in $parts; do
    case $part in
        make | weak | pairs | variants | ceiling | rankwork | peer | skewed | dispatch) "part_$part" ;;
        *) say "unknown part $part (make, weak, pairs, variants, ceiling, rankwork, peer, skewed, dispatch)"; exit 2 ;;
    esac
done
say "done: $parts"
