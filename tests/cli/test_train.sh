#!/usr/bin/env bash
# epmoe train: the default byte-level run (the fortunes corpus) at 1 and 2 ranks gives the same losses (the
# layout does not change the global batch's loss), the loss falls, train_log.jsonl has a line per step (its
# time inside the matmuls less than the forward and backward) and the validation lines, a progress line names
# the layer a step has reached, the saved checkpoint loads in epmoe eval; --text (bytes, or a tokenizer's ids);
# bad input is one error line, exit 2.
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
# time_s.gemm, timed inside the matmuls: some of the step (one thread a rank: never more than it), in every line
parts = [(l["time_s"]["gemm"], l["time_s"]["step"], l["time_s"]["forward"] + l["time_s"]["backward"]) for l in one]
assert all(0 < g < fb <= st for g, st, fb in parts), parts
s = json.load(open(f"{tmp}/t2/summary.json"))
assert s["ranks"] == 2 and s["steps"] == 12 and math.isfinite(s["final_val_loss"]) and s["bigram_val_loss"] > 0, s
print(f"loss {one[0]['lm_loss']:.3f} -> {one[-1]['lm_loss']:.3f}, 1 vs 2 ranks {worst:.2g}")
PY
then pass "  train log: the same losses at 1 and 2 ranks, falling"
else fail_check "train log"; fi
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" eval -q --model "$cli_tmp/ck2" --energy-source none --out "$cli_tmp/ev"
expect_stdout_lacks "error"

same_val_loss() {  # same_val_loss TRAIN_OUT EVAL_OUT WHAT: eval's mean NLL over 8 windows is train's last validation loss
    if python3 - "$1" "$2" <<'PY'
import json, sys
val = json.load(open(f"{sys.argv[1]}/summary.json"))["final_val_loss"]
ev = json.load(open(f"{sys.argv[2]}/eval.json"))
assert ev["tokens_scored"] == 8 * 32, ev["tokens_scored"]
assert abs(ev["mean_nll"] / val - 1) < 1e-5, (ev["mean_nll"], val)
print(f"train's last validation loss {val:.7f}, eval's {ev['mean_nll']:.7f}")
PY
    then pass "  $3 reproduces the last validation loss"
    else fail_check "$3 against the validation loss"; fi
}

# The default run's held-out bytes: summary.json's eval_check (epmoe eval of the checkpoint on val_tokens.safetensors,
# the validation windows' tokens) gives the last validation loss again, at 1 rank where training ran at 2.
read -r -a check < <(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['eval_check'])" \
    "$cli_tmp/t2/summary.json")
expect_exit 0 "${mpiexec[@]}" -np 1 "$EPMOE" "${check[@]:1}" -q --energy-source none --out "$cli_tmp/evcheck"
same_val_loss "$cli_tmp/t2" "$cli_tmp/evcheck" "eval_check"

# epmoe eval of the saved checkpoint reproduces the last validation loss: the validation windows (ctx + 1 tokens
# starting at multiples of ctx) are the Hugging Face guide's windows of ctx + 1 tokens advancing by ctx.
python3 -c "import sys; d = open('/usr/share/games/fortunes/science', 'rb').read()[:8 * 32 + 1]
open(sys.argv[1], 'wb').write(bytes(x for b in d for x in (b, 0)))" "$cli_tmp/val.bin"
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" train "${small[@]}" --val-data "$cli_tmp/val.bin" --out "$cli_tmp/t3" \
    --save "$cli_tmp/ck3"
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" eval -q --model "$cli_tmp/ck3" --tokens "$cli_tmp/val.bin" --ctx 33 \
    --stride 32 --energy-source none --out "$cli_tmp/ev3"
same_val_loss "$cli_tmp/t3" "$cli_tmp/ev3" "eval of the checkpoint on --val-data"

# train --text: with no --model the text's bytes are the tokens (the same run as train.corpus on that file); with
# a tokenizer, its ids (the fixture qwen2's, a synthetic vocabulary of 1024 >= its 798).
fx=$EPMOE_SOURCE_DIR/tests/fixtures/tokenizers
python3 -c "import json;print(''.join(c.get('text','') for c in json.load(open('$fx/qwen2/expected.json'))['cases'])*8)" \
    >"$cli_tmp/corpus.txt"
few=(--steps 4 --batch 4 --ctx 32 --eval-every 2 --set train.warmup_steps=1 --set train.val_windows=4 -q)
expect_exit 0 "$EPMOE" train "${few[@]}" --text "$cli_tmp/corpus.txt" --out "$cli_tmp/tx"
expect_exit 0 "$EPMOE" train "${few[@]}" --set train.corpus="$cli_tmp/corpus.txt" --out "$cli_tmp/tc"
# A long step shows which layer (or LM head chunk) it has reached (here every one: a progress interval of a
# microsecond).
expect_exit 0 "$EPMOE" train --steps 1 --batch 2 --ctx 16 --set train.val_windows=1 \
    --set output.progress_interval_s=0.000001 --out "$cli_tmp/tp"
expect_stderr_has "epmoe train: step 1/1: forward, layer 1 of 2, "
expect_stderr_has "epmoe train: step 1/1: backward, layer 1 of 2, "
expect_stderr_has "epmoe train: step 1/1: LM head, chunk 1 of 1, "
if cmp -s <(grep -o '"lm_loss":[^,]*' "$cli_tmp/tx/train_log.jsonl") <(grep -o '"lm_loss":[^,]*' "$cli_tmp/tc/train_log.jsonl") &&
    [ "$(grep -c lm_loss "$cli_tmp/tx/train_log.jsonl")" -eq 4 ]; then pass "  --text with no --model: the losses of train.corpus on the same bytes"
else fail_check "--text bytes vs train.corpus losses differ"; fi
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" train "${few[@]}" --tokenizer "$fx/qwen2" --set model.vocab_size=1024 \
    --text "$cli_tmp/corpus.txt" --val-text "$cli_tmp/corpus.txt" --out "$cli_tmp/tq"
if python3 - "$cli_tmp/tq" "$cli_tmp/tx" <<'PY'
import json, math, sys
q, x = ([json.loads(l) for l in open(f"{d}/train_log.jsonl")] for d in sys.argv[1:])
assert len(q) == 4 and all(math.isfinite(l["lm_loss"]) for l in q), q
assert q[0]["lm_loss"] > math.log(1024) - 1 and x[0]["lm_loss"] < math.log(256) + 1, (q[0], x[0])  # 1024 vs 256 ids
print(f"first loss {q[0]['lm_loss']:.2f} (ln 1024 = {math.log(1024):.2f})")
PY
then pass "  --text --tokenizer qwen2: 4 steps over 1024 ids"
else fail_check "--text with a tokenizer"; fi

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
bad "train.warmup_steps" --set train.warmup_steps=-1
bad "compute.dtype" --set compute.dtype=bf16
bad "train.corpus $cli_tmp/nowhere" --set train.corpus="$cli_tmp/nowhere"
bad "train.text $cli_tmp/nowhere.txt: $cli_tmp/nowhere.txt: cannot read" --text "$cli_tmp/nowhere.txt"
bad "train.val_text $cli_tmp/nowhere.txt" --text "$cli_tmp/corpus.txt" --val-text "$cli_tmp/nowhere.txt"
bad "give train.data or train.text, not both" --text "$cli_tmp/corpus.txt" --data "$cli_tmp/corpus.txt"
bad "outside the model's vocabulary of 256" --text "$cli_tmp/corpus.txt" --tokenizer "$fx/qwen2"
finish
