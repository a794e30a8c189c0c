#!/usr/bin/env bash
# The whole-model commands against Hugging Face: for the five models transformers 5.17 wrote itself
# (tests/fixtures/models, make_hf_models.py), `epmoe eval --dump-logits` gives HF's logits (1e-4 relative L2
# per sequence) and per-sequence NLL (1e-5 relative), and `epmoe generate` HF's greedy ids, at 1, 2 and 3 ranks.
# On the synthetic whole model: eval and generate run with no files, logits do not depend on the rank count
# (1e-5), and the KV-cache decode gives the tokens a full forward of prompt + generated tokens picks.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
read -r -a mpiexec <<<"$MPIEXEC"
models=$EPMOE_SOURCE_DIR/tests/fixtures/models
py() { python3 - "$here" "$@"; }

# 1. HF's own fixtures: logits, NLL and greedy ids at 1-3 ranks.
for m in mixtral mixtral_bf16_sharded olmoe qwen2_moe qwen3_moe; do
    py "$models/$m/input_ids.safetensors" "$cli_tmp/prompts_$m.safetensors" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from st_read import read, write
(b, s), ids = read(sys.argv[2])["input_ids"]
write(sys.argv[3], {"input_ids": ("I32", [b, 5], [ids[i * s + j] for i in range(b) for j in range(5)])})
PY
    for np in 1 2 3; do
        expect_exit 0 "${mpiexec[@]}" -np $np "$EPMOE" eval -q --model "$models/$m" --energy-source none \
            --tokens "$models/$m/input_ids.safetensors" --ctx 10 --dump-logits "$cli_tmp/logits.safetensors" \
            --out "$cli_tmp/eval_${m}_$np"
        if py "$models/$m" "$cli_tmp/logits.safetensors" "$cli_tmp/eval_${m}_$np/eval.json" >"$cli_tmp/cmp" 2>&1 <<'PY'
import json, math, sys
sys.path.insert(0, sys.argv[1])
from st_read import read
want = read(sys.argv[2] + "/expected.safetensors")
(b, s, v), hf = want["logits"]
shape, got = read(sys.argv[3])["logits"]
assert shape == [b, s, v], shape
worst = 0
for i in range(b):
    rows = range(i * s * v, (i + 1) * s * v)
    num = math.sqrt(sum((got[k] - hf[k]) ** 2 for k in rows))
    worst = max(worst, num / math.sqrt(sum(hf[k] ** 2 for k in rows)))
ev = json.load(open(sys.argv[4]))
nll = max(abs(q["mean_nll"] / n - 1) for q, n in zip(ev["sequences"], want["nll"][1]))
assert ev["tokens_scored"] == b * (s - 1), ev["tokens_scored"]
print(f"logits rel L2 {worst:.2g}, NLL rel {nll:.2g}")
assert worst < 1e-4 and nll < 1e-5
PY
        then pass "  $m at $np ranks: $(cat "$cli_tmp/cmp")"; else fail_check "$m at $np ranks: $(tail -n 2 "$cli_tmp/cmp")"; fi
        expect_exit 0 "${mpiexec[@]}" -np $np "$EPMOE" generate -q --model "$models/$m" --energy-source none \
            --tokens "$cli_tmp/prompts_$m.safetensors" --max-new-tokens 6 --out "$cli_tmp/gen_${m}_$np"
        if py "$models/$m" "$cli_tmp/gen_${m}_$np" >"$cli_tmp/cmp" 2>&1 <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
from st_read import read
want = list(read(sys.argv[2] + "/expected.safetensors")["generated_ids"][1])
shape, got = read(sys.argv[3] + "/generated.safetensors")["generated_ids"]
lines = [json.loads(l) for l in open(sys.argv[3] + "/generated.jsonl")]
assert shape == [3, 6] and list(got) == want, (list(got), want)
assert [x for l in lines for x in l["generated_ids"]] == want
print(f"generated {want[:6]}...")
PY
        then pass "  $m greedy ids at $np ranks: $(cat "$cli_tmp/cmp")"; else fail_check "$m generate at $np ranks: $(tail -n 2 "$cli_tmp/cmp")"; fi
    done
done

# 1b. End of sequence as transformers' generate(): mixtral's first prompt generates 62, 38, 85, ...; with
#     generation_config.json's eos_token_id 85 and pad_token_id 0 it ends there and pads; the others go on.
cp -r "$models/mixtral" "$cli_tmp/mixtral_eos"
echo '{"eos_token_id": [127, 85], "pad_token_id": 0}' >"$cli_tmp/mixtral_eos/generation_config.json"
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" generate -q --model "$cli_tmp/mixtral_eos" --energy-source none \
    --tokens "$cli_tmp/prompts_mixtral.safetensors" --max-new-tokens 6 --out "$cli_tmp/gen_eos"
if py "$models/mixtral" "$cli_tmp/gen_eos" >"$cli_tmp/cmp" 2>&1 <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from st_read import read
want = list(read(sys.argv[2] + "/expected.safetensors")["generated_ids"][1])
got = list(read(sys.argv[3] + "/generated.safetensors")["generated_ids"][1])
assert want[:3] == [62, 38, 85], want
assert got == [62, 38, 85, 0, 0, 0] + want[6:], (got, want)
print(got[:6])
PY
then pass "  eos ends a sequence and pads: $(cat "$cli_tmp/cmp")"; else fail_check "eos: $(tail -n 2 "$cli_tmp/cmp")"; fi

# 2. The synthetic whole model, no files: eval and generate run; logits at 2-4 ranks match 1 rank.
small=(--set model.d_model=64 --set model.d_ff=96 --set model.num_layers=2 --set model.vocab_size=97
       --set model.num_heads=4 --set model.num_kv_heads=2 --set model.head_dim=16 --set text.synthetic_sequences=5
       --set text.synthetic_length=12 --energy-source none -q)
for np in 1 2 3 4; do
    expect_exit 0 "${mpiexec[@]}" -np $np "$EPMOE" eval "${small[@]}" --ctx 12 --dump-logits "$cli_tmp/syn$np.safetensors" \
        --out "$cli_tmp/syn_eval$np"
done
for np in 2 3 4; do
    if py "$cli_tmp/syn1.safetensors" "$cli_tmp/syn$np.safetensors" >"$cli_tmp/cmp" 2>&1 <<'PY'
import math, sys
sys.path.insert(0, sys.argv[1])
from st_read import read
(b, s, v), one = read(sys.argv[2])["logits"]
_, many = read(sys.argv[3])["logits"]
worst = max(math.sqrt(sum((many[k] - one[k]) ** 2 for k in range(r * v, (r + 1) * v)) /
                      sum(one[k] ** 2 for k in range(r * v, (r + 1) * v))) for r in range(b * s))
print(f"worst row rel L2 {worst:.2g}")
assert worst < 1e-5
PY
    then pass "  synthetic logits at $np ranks match 1 rank: $(cat "$cli_tmp/cmp")"; else fail_check "synthetic $np ranks: $(cat "$cli_tmp/cmp")"; fi
done
expect_exit 0 "$EPMOE" eval --out "$cli_tmp/default_eval"
expect_stdout_has "perplexity"
expect_exit 0 "$EPMOE" generate --out "$cli_tmp/default_gen"
expect_stdout_has "decode"

# 3. KV-cache decode = full forward: generate 7 tokens after 3 prompts of 6 ids at 2 ranks, then eval prompt +
#    the first 6 generated tokens in one window: the argmax at position 5 + i there is generated token i.
py "$cli_tmp/kv_prompts.safetensors" <<'PY'
import random, sys
sys.path.insert(0, sys.argv[1])
from st_read import write
rng = random.Random(7)
write(sys.argv[2], {"input_ids": ("I64", [3, 6], [rng.randrange(97) for _ in range(18)])})
PY
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" generate "${small[@]}" --tokens "$cli_tmp/kv_prompts.safetensors" \
    --max-new-tokens 7 --out "$cli_tmp/kv"
py "$cli_tmp/kv_prompts.safetensors" "$cli_tmp/kv/generated.safetensors" "$cli_tmp/kv_full.safetensors" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from st_read import read, write
_, prompts = read(sys.argv[2])["input_ids"]
_, gen = read(sys.argv[3])["generated_ids"]
full = [x for b in range(3) for x in list(prompts[6 * b:6 * b + 6]) + list(gen[7 * b:7 * b + 6])]
write(sys.argv[4], {"input_ids": ("I32", [3, 12], full)})
PY
expect_exit 0 "$EPMOE" eval "${small[@]}" --tokens "$cli_tmp/kv_full.safetensors" --ctx 12 \
    --dump-logits "$cli_tmp/kv_logits.safetensors" --out "$cli_tmp/kv_eval"
if py "$cli_tmp/kv_logits.safetensors" "$cli_tmp/kv/generated.safetensors" >"$cli_tmp/cmp" 2>&1 <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from st_read import read
(b, s, v), logits = read(sys.argv[2])["logits"]
_, gen = read(sys.argv[3])["generated_ids"]
for q in range(b):
    for i in range(7):
        row = logits[((q * s) + 5 + i) * v:((q * s) + 6 + i) * v]
        best = max(range(v), key=lambda k: (row[k], -k))
        assert best == gen[7 * q + i], (q, i, best, gen[7 * q + i])
print("21 decoded tokens = the full forward's argmax")
PY
then pass "  KV cache: $(cat "$cli_tmp/cmp")"; else fail_check "KV cache decode vs full forward: $(tail -n 2 "$cli_tmp/cmp")"; fi

finish
