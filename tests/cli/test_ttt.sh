#!/usr/bin/env bash
# --policy ttt through the binary: a correction that has not been updated is the checkpoint's router bit for bit
# (HF's mixtral fixture, eval's logits equal to --policy none's); on the synthetic whole model the updates run and
# log their objective, and a perplexity budget it cannot keep is enforced (the correction shrinks, the run says so);
# bad policy.ttt.* values and a sigmoid gate are refused; run and generate say that they do not check the budget.
# The gradient (finite differences) and the rank invariance (1-4 ranks) are in tests/unit/control/test_ttt.cpp and
# tests/mpi/test_ttt_mpi.cpp.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
read -r -a mpiexec <<<"$MPIEXEC"
mixtral=$EPMOE_SOURCE_DIR/tests/fixtures/models/mixtral
small=(--set text.synthetic_sequences=8 --set text.synthetic_length=64 --ctx 64 --set model.d_model=64
    --set model.d_ff=96 --set model.num_layers=2 --set model.vocab_size=256 --set model.num_heads=4
    --set model.num_kv_heads=2 --set model.head_dim=16)

# 1. One step: no update has run, so ttt's logits are none's, bit for bit.
for p in none ttt; do
    expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" eval -q --model "$mixtral" --energy-source none --policy $p \
        --tokens "$mixtral/input_ids.safetensors" --ctx 10 --dump-logits "$cli_tmp/logits_$p.safetensors" \
        --out "$cli_tmp/zero_$p"
done
if cmp -s "$cli_tmp/logits_none.safetensors" "$cli_tmp/logits_ttt.safetensors"; then pass "  zero correction: logits equal none's"
else fail_check "zero correction: logits differ from none's"; fi

# 2. The updates and an unkeepable budget (0: any held-out increase), checked after every step.
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" eval -q --energy-source none --policy ttt "${small[@]}" \
    --set policy.ttt.lr=1 --set policy.ttt.balance=30 --set policy.ttt.check_every=1 \
    --set policy.ttt.holdout_windows=2 --set policy.ttt.max_delta_ppl=0 --out "$cli_tmp/budget"
expect_stderr_has "the fidelity weight doubles"
if python3 - "$cli_tmp/budget" >"$cli_tmp/check" 2>&1 <<'PY'
import json, sys
d = sys.argv[1]
t = json.load(open(d + "/eval.json"))["ttt"]
assert t["updates"] == 3 and len(t["checks"]) == 3, t
shrunk = [c for c in t["checks"] if c["shrunk"]]
assert shrunk and all(c["delta"] > 0 for c in shrunk) and t["shrinks"] == len(shrunk), t["checks"]
assert all(c["delta"] <= 0 for c in t["checks"] if not c["shrunk"])
assert t["holdout_windows"] == 2 and t["energy_source"] == "none", t
lines = [json.loads(l) for l in open(d + "/metrics.jsonl")]
loss = lines[0]["ttt"]["loss"]
assert loss["balance"] > 0 and loss["fidelity"] == 0 and loss["energy"] is None, loss  # first update: z' = z
assert lines[1]["ttt"]["loss"]["fidelity"] > 0 and lines[1]["fidelity"]["changed_assignment_fraction"] > 0
print(f"{t['shrinks']} shrink(s) over 3 checks, deltas {[round(c['delta'], 4) for c in t['checks']]}")
PY
then pass "  budget enforced: $(cat "$cli_tmp/check")"; else fail_check "budget: $(tail -n 3 "$cli_tmp/check")"; fi

# One window: none can be held out, and the run says the budget is not checked.
expect_exit 0 "$EPMOE" eval -q --energy-source none --policy ttt "${small[@]}" --set text.synthetic_sequences=1 \
    --out "$cli_tmp/one"
expect_stderr_has "too few to hold one out: the perplexity budget (policy.ttt.max_delta_ppl) is not checked"

# 3. Bad values and what ttt does not support.
expect_exit 2 "$EPMOE" eval --policy ttt "${small[@]}" --set policy.ttt.rank=0 --out "$cli_tmp/bad1"
expect_stderr_has "policy.ttt.rank = 0"
expect_exit 2 "$EPMOE" eval --policy ttt "${small[@]}" --set policy.ttt.lr=0 --out "$cli_tmp/bad2"
expect_stderr_has "policy.ttt.lr = 0"
expect_exit 2 "$EPMOE" run --policy ttt --steps 2 --set model.gate=sigmoid --out "$cli_tmp/bad3"
expect_stderr_has "model.gate sigmoid is not supported"
expect_one_error_line
expect_exit 2 "$EPMOE" train --policy ttt --steps 1 --out "$cli_tmp/bad4"
expect_stderr_has "epmoe train balances with none or aux_free only"

# 4. run adapts too (the metrics name the estimate), and says the budget is eval's.
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" run --policy ttt --steps 3 --tokens-per-rank 64 --energy-source estimated \
    --set model.d_model=64 --set model.d_ff=96 --out "$cli_tmp/run"
expect_stderr_has "policy.ttt.max_delta_ppl is checked by \`epmoe eval\` only"
if python3 -c "
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1] + '/metrics.jsonl')]
t = lines[-1]['ttt']
assert t['energy_source'] == 'estimated' and t['loss']['energy'] > 0 and len(t['rank_energy_cost'][0]) == 2, t
" "$cli_tmp/run" 2>"$cli_tmp/check"; then pass "  run: ttt figures per metrics line, energy estimated"
else fail_check "run metrics: $(tail -n 2 "$cli_tmp/check")"; fi
finish
