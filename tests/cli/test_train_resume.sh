#!/usr/bin/env bash
# epmoe train --resume: 10 steps straight equal 5 steps + save + resume + 5 steps bit for bit at 1 and 2 ranks
# (train_log.jsonl's losses, grad norms and rates as printed; the final checkpoint's safetensors bytes, the
# optimizer's too); a checkpoint written at 2 ranks resumes at 1. A non-finite loss stops the run with one
# error line naming the step and leaves the last checkpoint's files as they were (and loadable). Bad input:
# a --save folder that is not an epmoe checkpoint (left untouched), a negative learning rate, a data file shorter
# than one window, a resume with another seed or from a folder without trainer state: one error line, exit 2.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
read -r -a mpiexec <<<"$MPIEXEC"
small=(--batch 4 --ctx 16 --eval-every 0 --set train.warmup_steps=2 --set train.decay_steps=10
    --set train.val_windows=4 --set model.d_model=32 --set model.d_ff=64 --set model.num_heads=2
    --set model.num_kv_heads=1 --set model.head_dim=16 -q)

for np in 1 2; do
    run=("${mpiexec[@]}" -np $np "$EPMOE" train "${small[@]}")
    expect_exit 0 "${run[@]}" --steps 10 --out "$cli_tmp/a$np" --save "$cli_tmp/cka$np"
    expect_exit 0 "${run[@]}" --steps 5 --out "$cli_tmp/b$np" --save "$cli_tmp/ckb$np"
    expect_exit 0 "${run[@]}" --steps 10 --out "$cli_tmp/c$np" --resume "$cli_tmp/ckb$np" \
        --save "$cli_tmp/ckc$np"
    if python3 - "$cli_tmp" "$np" <<'PY'
import json, pathlib, sys
tmp, np = pathlib.Path(sys.argv[1]), sys.argv[2]
log = lambda d: [json.loads(l) for l in open(tmp / d / "train_log.jsonl")]
a, b, c = log(f"a{np}"), log(f"b{np}"), log(f"c{np}")
assert [l["step"] for l in a] == list(range(10)) and [l["step"] for l in b + c] == list(range(10)), (b, c)
keys = ("lm_loss", "aux_loss", "grad_norm", "lr")
for x, y in zip(a, b + c):
    assert all(x[k] == y[k] for k in keys), (x, y)  # float == float: the printed digits round-trip
files = sorted(p.relative_to(tmp / f"cka{np}") for p in (tmp / f"cka{np}").rglob("*.safetensors"))
assert len(files) >= 2 and any(str(f).startswith("optimizer/") for f in files), files
for f in files:
    assert (tmp / f"cka{np}" / f).read_bytes() == (tmp / f"ckc{np}" / f).read_bytes(), f
state = json.load(open(tmp / f"ckc{np}" / "trainer_state.json"))
assert state["step"] == 10 and state["optimizer_steps"] == 10 and state["layout"]["ranks"] == int(np), state
print(f"{np} rank(s): 10 steps == 5 + resume + 5 bit for bit ({len(files)} safetensors files equal)")
PY
    then pass "  resume at $np rank(s): bit for bit"
    else fail_check "resume at $np rank(s)"; fi
done

# The aux-loss-free bias during training (policy.name=aux_free): the biases are in trainer_state.json and resume
# with it bit for bit; with a large step u the load's CV ends below the unbiased run's (a), and a policy for
# inference only is refused.
af=("${mpiexec[@]}" -np 2 "$EPMOE" train "${small[@]}" --set policy.name=aux_free --set policy.aux_free.u=0.05)
expect_exit 0 "${af[@]}" --steps 10 --out "$cli_tmp/af" --save "$cli_tmp/ckaf"
expect_exit 0 "${af[@]}" --steps 5 --out "$cli_tmp/afb" --save "$cli_tmp/ckafb"
expect_exit 0 "${af[@]}" --steps 10 --out "$cli_tmp/afc" --resume "$cli_tmp/ckafb"
if python3 - "$cli_tmp" <<'PY'
import json, sys
log = lambda d: [json.loads(l) for l in open(f"{sys.argv[1]}/{d}/train_log.jsonl")]
plain, af, resumed = log("a2"), log("af"), log("afb") + log("afc")
assert all(x["lm_loss"] == y["lm_loss"] and x["load_cv"] == y["load_cv"] for x, y in zip(af, resumed)), "resume"
biases = json.load(open(f"{sys.argv[1]}/ckaf/trainer_state.json"))["routing_biases"]
assert biases["policy"] == "aux_free" and any(b != 0 for b in biases["biases"]), biases
cv = lambda log: sum(l["load_cv"] for l in log[5:]) / 5
assert cv(af) < cv(plain), (cv(af), cv(plain))
print(f"aux_free: mean load CV of steps 5-9 {cv(af):.3f} against {cv(plain):.3f} unbiased; resume bit for bit")
PY
then pass "  aux_free biases balance the load and resume bit for bit"
else fail_check "aux_free in training"; fi
expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" train "${small[@]}" --steps 2 --set policy.name=energy --out "$cli_tmp/pe"
expect_one_error_line
expect_stderr_has "policy.name energy"

# A checkpoint 2 ranks wrote resumes at 1 rank (the moments found by name): the same losses to rounding.
expect_exit 0 "${mpiexec[@]}" -np 1 "$EPMOE" train "${small[@]}" --steps 10 --out "$cli_tmp/d" \
    --resume "$cli_tmp/ckb2"
if python3 - "$cli_tmp" <<'PY'
import json, sys
log = lambda d: [json.loads(l) for l in open(f"{sys.argv[1]}/{d}/train_log.jsonl")]
a, d = log("a1")[5:], log("d")
worst = max(abs(x["lm_loss"] / y["lm_loss"] - 1) for x, y in zip(a, d))
assert len(d) == 5 and worst < 1e-4, (len(d), worst)
print(f"saved at 2 ranks, resumed at 1: worst loss difference {worst:.2g}")
PY
then pass "  resume at another rank count"
else fail_check "resume at another rank count"; fi

# A non-finite loss: resume the 5-step checkpoint at a huge learning rate; the step after the first update
# overflows. The run stops before its save is due, and the checkpoint's files stay byte for byte.
sums() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 md5sum); }
before=$(sums "$cli_tmp/ckb2")
expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" train "${small[@]}" --steps 10 --save-every 4 --lr 1e30 \
    --set train.min_lr=1e30 --out "$cli_tmp/nan" --resume "$cli_tmp/ckb2" --save "$cli_tmp/ckb2"
expect_one_error_line
expect_stderr_has "step 6"
expect_stderr_has "not finite"
if [ "$(sums "$cli_tmp/ckb2")" = "$before" ]; then pass "  the last checkpoint is unchanged"
else fail_check "checkpoint changed"; fi
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" eval -q --model "$cli_tmp/ckb2" --energy-source none \
    --out "$cli_tmp/ev"

bad() {  # bad TEXT ARGS...: epmoe train ARGS at 2 ranks exits 2 with one error line naming TEXT
    local text=$1
    shift
    expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" train "${small[@]}" --steps 10 --out "$cli_tmp/bad" "$@"
    expect_one_error_line
    if grep "^epmoe: error:" "$err_file" | grep -qF -- "$text"; then pass "  names '$text'"; else fail_check "lacks '$text'"; fi
}
mkdir -p "$cli_tmp/mine" && echo "keep me" >"$cli_tmp/mine/notes.txt"
bad "not an epmoe checkpoint" --save "$cli_tmp/mine"
if [ "$(cat "$cli_tmp/mine/notes.txt")" = "keep me" ] && [ "$(ls "$cli_tmp/mine")" = "notes.txt" ]; then
    pass "  the user's folder is untouched"
else fail_check "the user's folder changed"; fi
bad "train.lr" --lr -0.001
bad "train.lr" --lr inf
bad "train.save_every" --save-every 2
python3 -c "import sys; sys.path.insert(0, '$here'); import st_read
st_read.write('$cli_tmp/short.safetensors', {'input_ids': ('I32', [2, 8], list(range(16)))})"
bad "shorter than one window" --data "$cli_tmp/short.safetensors"
bad "seed" --resume "$cli_tmp/ckb2" --seed 12345
bad "no trainer_state.json" --resume "$cli_tmp/mine"
bad "leaves none" --resume "$cli_tmp/cka1"
finish
