#!/usr/bin/env bash
# epmoe train --dump-grads with --sampler sequential against Hugging Face transformers' autograd: for every
# fixture model (tests/fixtures/models/*/grads.safetensors, make_hf_grads.py), one step on the rows of its
# input_ids.safetensors ([3, 10]) at 1 and 2 ranks writes lm_loss, aux_loss and the gradient of every tensor
# under its Hugging Face name (the experts of both ranks gathered into one file); each matches HF's to 1e-4
# relative L2 (the losses to 1e-5), the same tolerance as tests/mpi/test_train_hf_mpi.cpp. The same for
# each model as transformers 5 writes it with its experts fused (tests/fixtures/models/*_fused).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
read -r -a mpiexec <<<"$MPIEXEC"
models=${EPMOE_FIXTURES:-$EPMOE_SOURCE_DIR/tests/fixtures}/models

check() {  # check DUMP HF: every tensor and loss of HF's file matches the dump
    python3 - "$1" "$2" <<'PY'
import math, os, sys
sys.path.insert(0, os.environ["here"])
import st_read
got, want = st_read.read(sys.argv[1]), st_read.read(sys.argv[2])
names = sorted(n for n in want if n != "router_aux_loss_coef")
assert sorted(got) == names, sorted(set(got) ^ set(names))
worst = 0.0
for n in names:
    (gs, g), (ws, w) = got[n], want[n]
    assert list(gs) == list(ws), (n, gs, ws)
    r = math.sqrt(sum((a - b) ** 2 for a, b in zip(g, w)) / max(sum(b * b for b in w), 1e-60))
    assert r < (1e-5 if n.endswith("_loss") else 1e-4), (n, r)
    worst = max(worst, 0 if n.endswith("_loss") else r)
lm = (got["lm_loss"][1][0], want["lm_loss"][1][0])
print(f"{len(names)} tensors, lm_loss {lm[0]:.7g} (HF {lm[1]:.7g}), worst rel L2 {worst:.2g}")
PY
}
export here

one_step() {  # one_step NAME MODEL_DIR INPUT_IDS HF_GRADS NP: the dump of one step at NP ranks against HF_GRADS
    local name=$1 dir=$2 ids=$3 want=$4 np=$5
    expect_exit 0 "${mpiexec[@]}" -np "$np" "$EPMOE" train -q --model "$dir" --data "$ids" --sampler sequential \
        --batch 3 --ctx 10 --steps 1 --dump-grads "$cli_tmp/$name-$np.safetensors" --out "$cli_tmp/out-$name-$np"
    if check "$cli_tmp/$name-$np.safetensors" "$want" >"$cli_tmp/check" 2>&1; then
        pass "  $name at $np rank(s): $(tail -n 1 "$cli_tmp/check")"
    else
        fail_check "$name at $np rank(s): $(tail -n 3 "$cli_tmp/check")"
    fi
}

for model in mixtral mixtral_bf16_sharded olmoe qwen2_moe qwen3_moe; do
    for np in 1 2; do
        one_step "$model" "$models/$model" "$models/$model/input_ids.safetensors" "$models/$model/grads.safetensors" $np
    done
done

# The same models written by transformers 5 in its runtime layout (make_hf_grads.py --fused: module mlp, experts
# fused) with HF's gradients of its own parameters: the dump names the fused gate_up_proj and down_proj as the
# checkpoint does; at 2 ranks and at 3 (4 experts: 2, 1 and 1 a rank).
for model in mixtral_fused olmoe_fused qwen2_moe_fused qwen3_moe_fused; do
    for np in 2 3; do
        one_step "$model" "$models/$model" "$models/$model/input_ids.safetensors" "$models/$model/grads.safetensors" $np
    done
done

# The sequential sampler takes the rows in order: a [B, S] file whose rows are not --ctx long is refused.
expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" train -q --model "$models/mixtral" \
    --data "$models/mixtral/input_ids.safetensors" --sampler sequential --batch 3 --ctx 8 --steps 1 --out "$cli_tmp/bad"
expect_one_error_line
expect_stderr_has "rows of 10 tokens"
finish
