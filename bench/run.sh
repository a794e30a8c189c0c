#!/usr/bin/env bash
# Builds the benchmarks and runs every figure of bench/RESULTS.md in one go, each beside its limit:
#   kernels   bench_kernels (Google Benchmark): measured FP32 peak, bare cblas_sgemm, epmoe's MlpKernel per
#             backend/dtype, memcpy against pack/combine, gate + top-k; OpenBLAS' own core type and Haswell's
#   dispatch  bench_dispatch on 2 ranks: dispatch + combine against bare MPI_Alltoallv, uniform and skewed
#   peer      bench/peer_torch.py: Hugging Face's MixtralSparseMoeBlock in Debian's torch, FP32 and BF16, each at
#             the best of every thread setting it has (OPENBLAS_NUM_THREADS, torch threads, OMP_WAIT_POLICY),
#             searched in this run, on fixed tokens and on workloads whose routing changes every step
#   layer     build/epmoe run on the peer's own checkpoint and tokens (2 ranks, 1 thread each) at 2048 and
#             64 tokens per rank, per backend/dtype, its output checked against the peer's float64 result;
#             the same on the peer's changing workloads (uniform, skewed, drift) and on epmoe's own synthetic one
#   overlap   the same layer with compute.overlap_chunks 2 and 4 (MPI_Ialltoallv behind the experts) against 1
#   decode    the layer at 1, 4 and 16 tokens a rank against the memory-bandwidth bound (bench/stream.cpp)
#   scaling   weak scaling 1 -> 2 ranks (4 oversubscribed, an overhead check only), weight bytes per rank;
#             the 2-rank point is the layer run of the default kernel (compute.backend=auto)
#   model     the whole model (bench/peer_model.py's 4-layer Mixtral checkpoint, vocab 32000) on 2 ranks, 1 thread
#             each: epmoe eval tokens/s and epmoe generate's decode ms a step at 1 and 16 prompts a rank, against
#             HF's MixtralForCausalLM in Debian's torch (with its KV cache) at its best thread setting, searched
#             here; the peer's mean NLL and greedy ids checked against epmoe's
#   tokenize  epmoe tokenize on one core against spm_encode (SentencePiece) and, where python3 has it, Hugging
#             Face tokenizers (bench/peer_tokenize.py) on a byte-level BPE; vocabularies of 32000 trained here
#   ttt       (--only ttt; not in the full run) --policy ttt against aux_free and prev_batch (epmoe compare --mode
#             eval, 2 ranks) on a model epmoe train made, over a stream whose routing drifts (fortunes and C++
#             sources in alternating blocks, bench/make_drift.py); and the energy term alone at weight 10 and 0
#   train     epmoe train at 1 and 2 ranks (bench/peer_train.py's 2-layer Mixtral checkpoint, vocab 8192) against
#             the same model trained by Debian's torch (autograd, AdamW) at its best thread setting for the same
#             cores, searched here; step-0 losses checked against each other; MFU against the measured peak
# then bench/report.py writes bench/RESULTS.md and bench/results.json. Takes about 20-25 minutes on 2 cores
# (the model stage about 9, the train stage about 6; `--only model` or `--only train` runs one alone).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
EPMOE_ROOT=$(cd "$here/.." && pwd)
# shellcheck source=launchers/lib/build.sh
source "$EPMOE_ROOT/launchers/lib/build.sh"

usage() {
    cat <<'EOF2'
usage: bench/run.sh [--quick] [--keep DIR] [--no-build] [--only model|train|tokenize|ttt]

  --quick      fewer repetitions and steps (a smoke run; its RESULTS.md says so)
  --keep DIR   keep the raw outputs (JSON, results directories, peer files) in DIR (default: a temp dir)
  --no-build   use build-bench/ as it is
  --only model the whole-model stage alone: writes DIR/MODEL.md and DIR/model.json (not bench/RESULTS.md)
  --only train the training stage alone: writes DIR/TRAIN.md and DIR/train.json (not bench/RESULTS.md)
  --only tokenize  tokenization MB/s on one core against spm_encode: DIR/TOKENIZE.md, DIR/tokenize.json
  --only ttt   test-time routing against the rule-based policies on a drifting stream: DIR/TTT.md, DIR/ttt.json
Writes bench/RESULTS.md and bench/results.json. Needs the packages of launchers/test.sh, python3-torch and
sentencepiece (installed when missing). EPMOE_BENCH_BUILD=DIR with --no-build: use that build of epmoe.
EOF2
}

quick=0 keep="" build=1 only=""
while [ $# -gt 0 ]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --quick) quick=1 ;;
        --keep) keep=$2; shift ;;
        --no-build) build=0 ;;
        --only)
            only=$2; shift
            case $only in model | train | tokenize | ttt) ;;
                *) echo "bench/run.sh: error: --only takes 'model', 'train', 'tokenize' or 'ttt'" >&2; exit 2 ;; esac ;;
        *) echo "bench/run.sh: error: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done

if [ "$only" != tokenize ] && [ "$(dpkg-query -W -f='${Status}' python3-torch 2>/dev/null)" != "install ok installed" ]; then
    echo "bench/run.sh: installing python3-torch for the PyTorch peer"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-torch python3-numpy
fi

if { [ -z "$only" ] || [ "$only" = tokenize ]; } &&
    [ "$(dpkg-query -W -f='${Status}' sentencepiece 2>/dev/null)" != "install ok installed" ]; then
    echo "bench/run.sh: installing sentencepiece (spm_train, spm_encode) for the tokenize stage"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends sentencepiece
fi

work=${keep:-$(mktemp -d /tmp/epmoe-bench.XXXXXX)}
# A kept folder from an earlier run: its results directories would make every epmoe run of this one refuse to
# overwrite them (each failing alone). A whole run needs a fresh folder; --only stages may add to one.
if [ -z "$only" ] && [ -e "$work/runs" ]; then
    echo "bench/run.sh: error: --keep $keep already holds runs/ from an earlier run: give a new folder" >&2
    exit 2
fi
mkdir -p "$work"
[ -n "$keep" ] || trap 'rm -rf "$work"' EXIT
bin=${EPMOE_BENCH_BUILD:-$EPMOE_ROOT/build-bench}  # --no-build with EPMOE_BENCH_BUILD=DIR: an existing build
if [ "$build" -eq 1 ]; then
    epmoe_configure build-bench "${EPMOE_CMAKE_OPENMPI[@]}" -DEPMOE_BUILD_BENCH=ON -DEPMOE_BUILD_TESTS=OFF >/dev/null
    cmake --build "$bin" -j "$(nproc)" --target epmoe bench_kernels bench_dispatch stream >/dev/null
fi
mpirun=("$EPMOE_ROOT/launchers/mpirun.sh")
# epmoe's ranks and the one-core kernels run one thread each; the peer gets its own settings (below).
one_thread=(env OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1)
# seq_steps: steps of the changing workloads; step 0 of epmoe and the peer's warm-up batch are not timed.
reps=5 dreps=30 steps=6 small_steps=30 seq_steps=21 search_reps=3
# The whole model: eval windows of eval_ctx tokens (eval_batch a rank a step), prompts of 128 tokens and
# new_tokens generated each; mreps runs of each epmoe command and timed passes of the peer.
eval_windows=32 eval_ctx=256 eval_batch=4 new_tokens=32 mreps=3
# Training: train_steps optimizer steps of train_batch windows of 256 tokens (the first step not timed).
train_steps=6 train_batch=8
# Test-time routing: the model's training steps and the stream's blocks of each source.
ttt_train_steps=300 ttt_blocks=24
[ "$quick" -eq 0 ] || { reps=2 dreps=5 steps=3 small_steps=8 seq_steps=5 search_reps=1
                        eval_windows=16 new_tokens=8 mreps=2 train_steps=3 ttt_train_steps=60 ttt_blocks=8; }
start=$SECONDS
say() { printf 'bench: [%3d s] %s\n' $((SECONDS - start)) "$*" >&2; }

say "machine: epmoe info"
"${one_thread[@]}" "$bin/epmoe" info --json >"$work/info.json"
{
    lscpu
    grep -m1 '^cpu MHz' /proc/cpuinfo | sed 's/^cpu MHz[^:]*/cpuinfo MHz/'
    grep -o -w -E 'avx512f|avx512_bf16' /proc/cpuinfo | sort -u | sed 's/^/isa: /'
} >"$work/lscpu.txt" || true
"${one_thread[@]}" "$mpirun" -n 2 "$bin/epmoe" info --json >"$work/info2.json" 2>/dev/null || true
# Where Debian's OpenBLAS takes this CPU for an older core (Prescott on the 16-core Xeon: sgemm 5x slower), epmoe
# sets OPENBLAS_CORETYPE itself (`epmoe info`: blas.core_detected). Debian's torch links the same OpenBLAS, so
# the peers get the same core: a peer at its best settings.
core_fix=$(/usr/bin/python3 -c 'import json, sys
b = json.load(open(sys.argv[1]))["blas"]
print(b["core"] if b.get("core_detected") else "")' "$work/info.json")
if [ -n "$core_fix" ]; then
    export OPENBLAS_CORETYPE=$core_fix
    say "machine: OpenBLAS detected an older core; OPENBLAS_CORETYPE=$core_fix for epmoe and every peer"
fi

# The whole model: epmoe eval and generate on 2 ranks against bench/peer_model.py on the same files. The peer's
# thread settings are searched first; then each repetition runs epmoe and the peer (a fresh process at its best
# setting) back to back, so a change in the machine's load falls on both sides of a ratio.
model_epmoe() {  # $1 name, rest: the command and its options
    local name=$1 log=$work/model/runs/$1.log
    shift
    "${one_thread[@]}" "${mpirun[@]}" -n 2 "$bin/epmoe" "$@" -q --model "$work/model/model" --energy-source none \
        --out "$work/model/runs/$name" >"$log" 2>&1 ||
        say "  $name failed: $(grep -m1 'epmoe: error' "$log" || tail -n 1 "$log")"
}
model_peer() {  # $1 mode, $2 batch, $3 repetition: one timed pass at the search's best setting
    local blas threads wait wait_env=() search=$work/model/peer_search_$1.json
    read -r blas threads wait < <(/usr/bin/python3 -c 'import json, sys
b = json.load(open(sys.argv[1]))["best"][sys.argv[2]]
print(b["openblas_num_threads"], b["torch_threads"], b["omp_wait_policy"] or "-")' "$search" "$2")
    [ "$wait" = - ] || wait_env=("OMP_WAIT_POLICY=$wait")
    env -u OMP_WAIT_POLICY OPENBLAS_NUM_THREADS="$blas" OMP_NUM_THREADS="$threads" "${wait_env[@]}" \
        /usr/bin/python3 "$here/peer_model.py" time "$work/model" --mode "$1" --batch "$2" --new-tokens "$new_tokens" \
        --threads "$threads" --reps 1 >"$work/model/peer_$1_$2-$3.json"
}
model_stage() {
    local m=$work/model mpeer=(/usr/bin/python3 "$here/peer_model.py") r b windows=$((2 * eval_batch))
    say "model: checkpoint and tokens (4 layers, d_model 1024, d_ff 2048, 8 experts top-2, vocab 32000)"
    mkdir -p "$m/runs"
    "${mpeer[@]}" make "$m" --eval-sequences "$eval_windows" --ctx "$eval_ctx" --prompts 2,32 --prompt-len 128
    cut -d' ' -f1 /proc/loadavg >"$m/loadavg.txt"  # the machine is shared: its load beside the figures
    say "model: peer, every thread setting (eval: $windows windows; decode: 2 and 32 prompts of 32 tokens)"
    "${mpeer[@]}" search "$m" --mode eval --batch "$windows" --windows "$windows" --reps 1 >"$m/peer_search_eval.json"
    "${mpeer[@]}" search "$m" --mode decode --batch 2,32 --new-tokens 8 --prompt-tokens 32 --reps 1 \
        >"$m/peer_search_decode.json"
    for r in $(seq "$mreps"); do
        say "model: eval, $eval_windows windows of $eval_ctx tokens, $eval_batch a rank a step: epmoe, peer ($r/$mreps)"
        model_epmoe "eval-$r" eval --tokens "$m/eval.safetensors" --ctx "$eval_ctx" --batch "$eval_batch"
        model_peer eval "$windows" "$r"
        # Cross-check: epmoe's mean NLL against the peer's.
        [ ! -f "$m/runs/eval-$r/eval.json" ] || "${mpeer[@]}" check "$m" --eval "$m/runs/eval-$r/eval.json" \
            --peer "$m/peer_eval_$windows-$r.json" >"$m/runs/eval-$r.check.json"
        for b in 1 16; do
            say "model: decode, $b prompt(s) a rank, $new_tokens new tokens: epmoe, peer ($r/$mreps)"
            model_epmoe "gen-b$b-$r" generate --tokens "$m/prompts_$((2 * b)).safetensors" \
                --max-new-tokens "$new_tokens" --batch "$b"
            model_peer decode $((2 * b)) "$r"
            # Cross-check: epmoe's greedy ids against the peer's (peer_ids_<sequences>.safetensors).
            [ ! -f "$m/runs/gen-b$b-$r/generated.safetensors" ] || "${mpeer[@]}" check "$m" --batch $((2 * b)) \
                --generated "$m/runs/gen-b$b-$r/generated.safetensors" >"$m/runs/gen-b$b-$r.check.json"
        done
    done
    cut -d' ' -f1 /proc/loadavg >>"$m/loadavg.txt"
    say "model: checks $(cat "$m"/runs/*.check.json 2>/dev/null | /usr/bin/python3 -c 'import json, sys
c = [json.loads(l) for l in sys.stdin]
print(sum(x.get("ok", x.get("equal", False)) for x in c), "of", len(c), "pass")')"
}

# Training: epmoe train at 1 and 2 ranks against bench/peer_train.py on the same checkpoint, rows and optimizer
# settings; the peer's thread settings are searched first, then each repetition runs epmoe and the peer (at its
# best setting for the same cores) back to back.
train_stage() {
    local t=$work/train tpeer=(/usr/bin/python3 "$here/peer_train.py") r n blas threads wait wait_env
    say "train: checkpoint and rows (2 layers, d_model 512, d_ff 1024, 8 experts top-2, vocab 8192; $train_batch windows of 256 a step)"
    mkdir -p "$t/runs"
    "${tpeer[@]}" make "$t" --rows $((train_batch * train_steps))
    "${tpeer[@]}" flops "$t" --batch "$train_batch" >"$t/flops.json"
    "${one_thread[@]}" "$bin/bench/bench_kernels" --benchmark_filter='^Peak(/|$)' --benchmark_repetitions=3 \
        --benchmark_format=json --benchmark_out="$t/peak.json" --benchmark_out_format=json >/dev/null
    say "train: peer, every thread setting (2 steps each)"
    "${tpeer[@]}" search "$t" --batch "$train_batch" --steps 2 >"$t/peer_search.json"
    for r in $(seq "$mreps"); do
        for n in 1 2; do
            say "train: $train_steps steps on $n core(s): epmoe, peer ($r/$mreps)"
            "${one_thread[@]}" "${mpirun[@]}" -n "$n" "$bin/epmoe" train -q --model "$t/model" \
                --data "$t/train.safetensors" --sampler sequential --batch "$train_batch" --ctx 256 \
                --steps "$train_steps" --set train.warmup_steps=2 --set train.val_windows=1 \
                --out "$t/runs/epmoe-$n-$r" >"$t/runs/epmoe-$n-$r.log" 2>&1 ||
                say "  epmoe-$n-$r failed: $(grep -m1 'epmoe: error' "$t/runs/epmoe-$n-$r.log" || tail -n 1 "$t/runs/epmoe-$n-$r.log")"
            read -r blas threads wait < <(/usr/bin/python3 -c 'import json, sys
b = json.load(open(sys.argv[1]))["best"][sys.argv[2]]
print(b["openblas_num_threads"], b["torch_threads"], b["omp_wait_policy"] or "-")' "$t/peer_search.json" "$n")
            wait_env=()
            [ "$wait" = - ] || wait_env=("OMP_WAIT_POLICY=$wait")
            env -u OMP_WAIT_POLICY OPENBLAS_NUM_THREADS="$blas" OMP_NUM_THREADS="$threads" "${wait_env[@]}" \
                "${tpeer[@]}" time "$t" --batch "$train_batch" --steps "$train_steps" --threads "$threads" \
                >"$t/peer-$n-$r.json"
        done
    done
}

# Test-time routing: a byte-level model trained here without a load-balancing loss (its routing is skewed), a
# stream of fortunes and C++ sources alternating every 4096 bytes, and epmoe compare --mode eval at 2 ranks: ttt
# with a perplexity budget of 2 % (under aux_free's own cost here) against aux_free and prev_batch; ttt at its
# defaults (budget 1 %); then ttt's energy term alone (balance 0) at weight 10 and at 0, each against none, for the
# direction of J/token (the energy source is the run's: `auto`).
ttt_stage() {
    local t=$work/ttt e f fortunes=()
    mkdir -p "$t"
    for f in /usr/share/games/fortunes/*; do
        case ${f##*/} in *.*) ;; *) [ -f "$f" ] && [ ! -L "$f" ] && fortunes+=("$f") ;; esac
    done
    say "ttt: epmoe train, $ttt_train_steps steps (4 layers, d_model 128, 8 experts top-2, byte vocab, no aux loss)"
    "${one_thread[@]}" "${mpirun[@]}" -n 2 "$bin/epmoe" train -q --steps "$ttt_train_steps" --ctx 128 --batch 16 \
        --aux-loss-coef 0 --set model.d_model=128 --set model.d_ff=256 --set model.num_layers=4 \
        --set model.num_heads=4 --set model.num_kv_heads=2 --set model.head_dim=32 --save "$t/model" \
        --out "$t/train" >"$t/train.log" 2>&1
    /usr/bin/python3 "$here/make_drift.py" "$t/drift.bin" --a "${fortunes[@]}" \
        --b "$EPMOE_ROOT"/src/*/*.cpp --block 4096 --blocks "$ttt_blocks"
    local common=(--mode eval --model "$t/model" --tokens "$t/drift.bin" --token-dtype uint16 --ctx 128 --batch 8
        --repeats "$mreps")
    say "ttt: compare ttt (perplexity budget 2 %), aux_free, prev_batch (none the baseline), $mreps repeats"
    "${one_thread[@]}" "${mpirun[@]}" -n 2 "$bin/epmoe" compare "${common[@]}" --set policy.ttt.max_delta_ppl=0.02 \
        --pairs ttt/contiguous,aux_free/contiguous,prev_batch/contiguous --out "$t/policies" >"$t/policies.log" 2>&1 ||
        say "  failed: $(grep -m1 'epmoe: error' "$t/policies.log" || tail -n 1 "$t/policies.log")"
    say "ttt: compare ttt at its defaults (budget 1 %) against none"
    "${one_thread[@]}" "${mpirun[@]}" -n 2 "$bin/epmoe" compare "${common[@]}" --pairs ttt/contiguous \
        --out "$t/defaults" >"$t/defaults.log" 2>&1 ||
        say "  failed: $(grep -m1 'epmoe: error' "$t/defaults.log" || tail -n 1 "$t/defaults.log")"
    for e in 10 0; do
        say "ttt: compare the energy term alone at weight $e against none"
        "${one_thread[@]}" "${mpirun[@]}" -n 2 "$bin/epmoe" compare "${common[@]}" --pairs ttt/contiguous \
            --set policy.ttt.balance=0 --set policy.ttt.energy=$e --out "$t/energy$e" >"$t/energy$e.log" 2>&1 ||
            say "  failed: $(grep -m1 'epmoe: error' "$t/energy$e.log" || tail -n 1 "$t/energy$e.log")"
    done
}

# Tokenization on one core (taskset -c 0): epmoe tokenize on a SentencePiece BPE (its tokenizer.model) against
# spm_encode, and on a byte-level BPE tokenizer.json, both of vocabulary 32000 trained here on the fortunes text
# (no real checkpoint's tokenizer is on the machine); the text is that corpus 4 times. Hugging Face tokenizers
# (bench/peer_tokenize.py) runs where python3 has it. epmoe's SentencePiece ids are checked against spm_encode's.
tokenize_stage() {
    local t=$work/tokenize r f
    mkdir -p "$t/sp" "$t/runs"
    say "tokenize: the fortunes text x4; SentencePiece BPE (spm_train) and byte-level BPE (bench/train_bpe.py), vocab 32000"
    for f in /usr/share/games/fortunes/*; do
        case ${f##*/} in *.*) ;; *) [ -f "$f" ] && [ ! -L "$f" ] && cat "$f" ;; esac
    done >"$t/fortunes.txt"
    for r in 1 2 3 4; do cat "$t/fortunes.txt"; done >"$t/text.txt"
    spm_train --input="$t/fortunes.txt" --model_prefix="$t/sp/tokenizer" --model_type=bpe --vocab_size=32000 \
        --character_coverage=1.0 --byte_fallback=true --minloglevel=2 >"$t/spm_train.log" 2>&1
    /usr/bin/python3 "$here/train_bpe.py" "$t/fortunes.txt" "$t/bpe" --vocab 32000 >"$t/bpe.json"
    for r in $(seq "$reps"); do
        say "tokenize: spm_encode, epmoe (SentencePiece), epmoe (byte-level BPE) ($r/$reps)"
        time_cmd "$t/runs/spm-$r.json" spm_encode --model="$t/sp/tokenizer.model" --output_format=id \
            --input="$t/text.txt" --output="$t/spm_ids.txt"
        time_cmd "$t/runs/epmoe_sp-$r.json" "$bin/epmoe" tokenize --model "$t/sp" --text "$t/text.txt" \
            --out "$t/sp.bin" --no-special -q --overwrite
        time_cmd "$t/runs/epmoe_bpe-$r.json" "$bin/epmoe" tokenize --model "$t/bpe" --text "$t/text.txt" \
            --out "$t/bpe.bin" --no-special -q --overwrite
    done
    if /usr/bin/python3 -c 'import tokenizers' 2>/dev/null; then
        say "tokenize: Hugging Face tokenizers (bench/peer_tokenize.py)"
        taskset -c 0 /usr/bin/python3 "$here/peer_tokenize.py" "$t/bpe" "$t/text.txt" --runs "$reps" \
            --ids "$t/hf_ids.bin" >"$t/peer.json"
    fi
}

# time_cmd OUT CMD...: runs CMD on core 0, one thread; OUT gets its wall seconds, exit code and stdout's last line.
time_cmd() {
    local out=$1 t0 t1 rc=0
    shift
    t0=$(date +%s.%N)
    "${one_thread[@]}" taskset -c 0 "$@" >"$out.log" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    /usr/bin/python3 -c 'import json, sys
print(json.dumps({"seconds": float(sys.argv[2]) - float(sys.argv[1]), "rc": int(sys.argv[3]), "command": sys.argv[4:]}))' \
        "$t0" "$t1" "$rc" "$@" >"$out"
}

# One stage alone: its <stage>_stage, then report_<stage>.py writes DIR/<STAGE>.md and DIR/<stage>.json.
if [ -n "$only" ]; then
    "${only}_stage"
    name=$(echo "$only" | tr '[:lower:]' '[:upper:]')
    say "report: $work/$name.md"
    /usr/bin/python3 "$here/report_$only.py" "$work" --quick "$quick" --markdown "$work/$name.md" --json "$work/$only.json"
    cat "$work/$name.md"
    exit 0
fi

say "kernels: bench_kernels ($reps repetitions)"
"${one_thread[@]}" "$bin/bench/bench_kernels" --benchmark_repetitions="$reps" --benchmark_enable_random_interleaving=true --benchmark_format=json \
    --benchmark_out="$work/kernels.json" --benchmark_out_format=json >/dev/null
say "kernels: bare sgemm with OPENBLAS_CORETYPE=Haswell"
"${one_thread[@]}" OPENBLAS_CORETYPE=Haswell "$bin/bench/bench_kernels" --benchmark_filter=SgemmBare --benchmark_enable_random_interleaving=true \
    --benchmark_repetitions="$reps" --benchmark_format=json --benchmark_out="$work/kernels_haswell.json" \
    --benchmark_out_format=json >/dev/null

say "memory: STREAM-like copy, 1 and 2 threads"
"$bin/bench/stream" --mib 256 --threads 2 --reps "$reps" >"$work/stream.json"

say "dispatch: bench_dispatch on 2 ranks ($dreps repetitions)"
"${one_thread[@]}" "${mpirun[@]}" -n 2 "$bin/bench/bench_dispatch" --reps "$dreps" >"$work/dispatch.jsonl"

say "peer: checkpoint and tokens (d_model 1024, d_ff 3584, 8 experts, top-2; $seq_steps-step workloads)"
peer=(/usr/bin/python3 "$here/peer_torch.py")
workloads=fixed,uniform,skewed,drift
"${peer[@]}" make "$work/peer" --tokens 4096,128,2048,8192 --expected 4096,128 --steps "$seq_steps" \
    --workloads uniform,skewed,drift --workload-tokens 4096,128
for dtype in fp32 bf16; do
    say "peer: $dtype, every thread setting ($search_reps steps each, uniform workload)"
    "${peer[@]}" search "$work/peer" --tokens 4096,128 --dtype "$dtype" --workload uniform --reps "$search_reps" \
        >"$work/peer_search_$dtype.json"
    for tokens in 4096 128; do
        # The best setting of the search: OPENBLAS_NUM_THREADS, torch threads, OMP_WAIT_POLICY (or unset).
        read -r blas threads wait < <(/usr/bin/python3 -c 'import json, sys
b = json.load(open(sys.argv[1]))["best"][sys.argv[2]]
print(b["openblas_num_threads"], b["torch_threads"], b["omp_wait_policy"] or "-")' "$work/peer_search_$dtype.json" "$tokens")
        say "peer: $dtype at $tokens tokens, OPENBLAS_NUM_THREADS=$blas, $threads torch threads, OMP_WAIT_POLICY=$wait"
        wait_env=()
        [ "$wait" = - ] || wait_env=("OMP_WAIT_POLICY=$wait")
        env -u OMP_WAIT_POLICY OPENBLAS_NUM_THREADS="$blas" OMP_NUM_THREADS="$threads" "${wait_env[@]}" \
            "${peer[@]}" time "$work/peer" --tokens "$tokens" --dtype "$dtype" --workload "$workloads" \
            --threads "$threads" --reps $((seq_steps - 1)) >"$work/peer_${dtype}_$tokens.json"
    done
done

# One epmoe run on the peer's checkpoint: $1 name, $2 ranks, $3 tokens: a file of the peer's folder without
# .safetensors (input_<T>: fixed tokens, checked against the float64 result; <workload>_<T>: one batch a step)
# or "synthetic" (epmoe's own workload, --tokens-per-rank among the options), $4 steps, rest: options.
layer_run() {
    local name=$1 ranks=$2 tokens=$3 run_steps=$4 input=()
    shift 4
    [ "$tokens" = synthetic ] || input=(--input "$work/peer/$tokens.safetensors")
    say "layer: $name ($ranks ranks, $tokens, $run_steps steps)"
    if "${one_thread[@]}" "${mpirun[@]}" -n "$ranks" "$bin/epmoe" run -q --model "$work/peer/model" "${input[@]}" \
        --steps "$run_steps" --energy-source none --out "$work/runs/$name" \
        --dump-output "$work/runs/$name.out.safetensors" "$@" >"$work/runs/$name.log" 2>&1; then
        if [ -f "$work/peer/expected_${tokens#input_}.safetensors" ]; then
            "${peer[@]}" check "$work/peer" --tokens "${tokens#input_}" --output "$work/runs/$name.out.safetensors" \
                >"$work/runs/$name.check.json"
        fi
    else
        say "  $name failed: $(grep -m1 'epmoe: error' "$work/runs/$name.log" || tail -n 1 "$work/runs/$name.log")"
    fi
}
mkdir -p "$work/runs"
fixed_kernels=(openblas/fp32 onednn/fp32 onednn/bf16)
grep -qw amx_bf16 /proc/cpuinfo && fixed_kernels+=(amx/bf16)  # what compute.backend=auto runs for bf16 here
for kernel in "${fixed_kernels[@]}"; do
    set -- --set "compute.backend=${kernel%/*}" --set "compute.dtype=${kernel#*/}"
    layer_run "t2048-${kernel/\//-}" 2 input_4096 "$steps" "$@"
    layer_run "t64-${kernel/\//-}" 2 input_128 "$small_steps" "$@"
done
# Routing that changes every step: the peer's workloads (the same batches it ran), and epmoe's own synthetic
# workload of the same family (32 clusters, Zipf 1.2, noise 0.5), in both dtypes of compute.backend=auto.
for dtype in fp32 bf16; do
    for workload in uniform skewed drift; do
        layer_run "seq-$workload-t2048-$dtype" 2 "${workload}_4096" "$seq_steps" --set "compute.dtype=$dtype"
    done
    layer_run "seq-uniform-t64-$dtype" 2 uniform_128 "$seq_steps" --set "compute.dtype=$dtype"
    layer_run "seq-synthetic-t2048-$dtype" 2 synthetic "$seq_steps" --tokens-per-rank 2048 --set "compute.dtype=$dtype"
done
# Decode-sized steps: 1, 4 and 16 tokens a rank, against the bytes of the experts they activate over the
# copy bandwidth measured above.
for dtype in fp32 bf16; do
    for tokens in 1 4 16; do
        layer_run "decode-t$tokens-$dtype" 2 synthetic "$seq_steps" --tokens-per-rank "$tokens" --set "compute.dtype=$dtype"
    done
done
# The overlap lever, on and off: compute.overlap_chunks=1 is the t2048/t64 run of the default kernel above.
for chunks in 2 4; do
    layer_run "overlap$chunks-t2048" 2 input_4096 "$steps" --set "compute.overlap_chunks=$chunks"
    layer_run "overlap$chunks-t64" 2 input_128 "$small_steps" --set "compute.overlap_chunks=$chunks"
done
layer_run "weak-p1" 1 input_2048 "$steps"
layer_run "weak-p4" 4 input_8192 $((steps / 2 + 1))

model_stage
train_stage
tokenize_stage

say "report: bench/RESULTS.md"
/usr/bin/python3 "$here/report.py" "$work" --quick "$quick" --seconds $((SECONDS - start)) \
    --markdown "$here/RESULTS.md" --json "$here/results.json"
say "done"
