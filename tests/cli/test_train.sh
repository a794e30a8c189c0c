#!/usr/bin/env bash
# epmoe train: the default byte-level run (the fortunes corpus) at 1 and 2 ranks gives the same losses (the
# layout does not change the global batch's loss), the loss falls, train_log.jsonl has a line per step and
# the validation lines, the saved checkpoint loads in epmoe eval; bad input is one error line, exit 2.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
read -r -a mpiexec <<<"$MPIEXEC"
small=(--steps 12 --batch 4 --ctx 32 --eval-every 6 --set train.warmup_steps=2 --set train.val_windows=8 -q)

for np in 1 2; do
    expect_exit 0 "${mpiexec[@]}" -np $np "$EPMOE" train "${small[@]}" --out "$cli_tmp/t$np" --save "$cli_tmp/ck$np"
done
if python3 - "$cli_tmp" <<'PY'
import json, math, sys
tmp = sys.argv[1]
one, two = ([json.loads(l) for l in open(f"{tmp}/t{n}/train_log.jsonl")] for n in (1, 2))
assert len(one) == len(two) == 12, (len(one), len(two))
worst = max(abs(a["lm_loss"] / b["lm_loss"] - 1) for a, b in zip(one, two))
assert worst < 1e-4, worst
assert one[-1]["lm_loss"] < one[0]["lm_loss"] - 1, (one[0]["lm_loss"], one[-1]["lm_loss"])
assert [l["step"] for l in one if "val_loss" in l] == [5, 11], one
s = json.load(open(f"{tmp}/t2/summary.json"))
assert s["ranks"] == 2 and s["steps"] == 12 and math.isfinite(s["final_val_loss"]) and s["bigram_val_loss"] > 0, s
print(f"loss {one[0]['lm_loss']:.3f} -> {one[-1]['lm_loss']:.3f}, 1 vs 2 ranks {worst:.2g}")
PY
then pass "  train log: the same losses at 1 and 2 ranks, falling"
else fail_check "train log"; fi
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" eval -q --model "$cli_tmp/ck2" --energy-source none --out "$cli_tmp/ev"
expect_stdout_lacks "error"

bad() {  # bad TEXT ARGS...: epmoe train ARGS at 2 ranks exits 2 with one error line naming TEXT
    local text=$1
    shift
    expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" train "${small[@]}" --out "$cli_tmp/bad" "$@"
    expect_one_error_line
    if grep "^epmoe: error:" "$err_file" | grep -qF -- "$text"; then pass "  names '$text'"; else fail_check "lacks '$text'"; fi
}
printf 'tiny' >"$cli_tmp/tiny.txt"
bad "shorter than one window" --set train.corpus="$cli_tmp/tiny.txt"
bad "train.lr" --lr nan
bad "train.warmup_steps" --set train.warmup_steps=50
bad "compute.dtype" --set compute.dtype=bf16
bad "train.corpus $cli_tmp/nowhere" --set train.corpus="$cli_tmp/nowhere"
finish
