#!/usr/bin/env bash
# results/README.md against what epmoe writes (tests/cli/check_results_doc.py), on a synthetic run with a
# policy, capacity and the estimated energy source, on a checkpoint run at 2 ranks, and on eval and generate
# (eval.json, generated.jsonl and their summary.json keys), and on train (train_log.jsonl, its summary.json).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
fixtures=${EPMOE_FIXTURES:-$EPMOE_SOURCE_DIR/tests/fixtures}
read -r -a mpiexec <<<"$MPIEXEC"
ck=$fixtures/checkpoints/qwen2_moe_shared
expect_exit 0 "${mpiexec[@]}" -n 2 "$EPMOE" run --set model.d_model=48 --set model.d_ff=80 --set model.num_layers=2 \
    --tokens-per-rank 32 --steps 3 -q --policy aux_free --capacity-factor 1.0 --energy-source estimated \
    --out "$cli_tmp/synthetic"
expect_exit 0 "${mpiexec[@]}" -n 2 "$EPMOE" run --model "$ck" --input "$ck/input.safetensors" --steps 2 -q \
    --energy-source none --out "$cli_tmp/checkpoint"
small=(--set model.d_model=32 --set model.d_ff=48 --set model.num_layers=2 --set model.vocab_size=61
       --set text.synthetic_sequences=3 --set text.synthetic_length=9 -q)
expect_exit 0 "${mpiexec[@]}" -n 2 "$EPMOE" eval "${small[@]}" --energy-source estimated --policy ttt --out "$cli_tmp/eval"
expect_exit 0 "${mpiexec[@]}" -n 2 "$EPMOE" generate "${small[@]}" --energy-source none --max-new-tokens 3 \
    --out "$cli_tmp/generate"
expect_exit 0 "$EPMOE" train --steps 2 --batch 2 --ctx 16 --eval-every 2 --set train.val_windows=1 -q \
    --set model.d_model=32 --set model.d_ff=48 --out "$cli_tmp/train"
expect_exit 0 python3 "$here/check_results_doc.py" "$EPMOE_SOURCE_DIR/results/README.md" "$cli_tmp/synthetic" \
    "$cli_tmp/checkpoint" "$cli_tmp/eval" "$cli_tmp/generate" "$cli_tmp/train"
expect_stdout_has "0 differences"
finish
