#!/usr/bin/env bash
# results/README.md against what epmoe writes (tests/cli/check_results_doc.py), on a synthetic run with a
# policy, capacity and the estimated energy source, and on a checkpoint run at 2 ranks.
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
expect_exit 0 python3 "$here/check_results_doc.py" "$EPMOE_SOURCE_DIR/results/README.md" "$cli_tmp/synthetic" \
    "$cli_tmp/checkpoint"
expect_stdout_has "0 differences"
finish
