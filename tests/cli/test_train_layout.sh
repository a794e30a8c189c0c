#!/usr/bin/env bash
# epmoe train --ep-size N (DP x EP): the loss curve does not depend on the layout. The same global batch at
# world 1, 2 and 4 with every valid N (1 and 2 at world 2; 1, 2 and 4 at world 4) gives the same LM and aux
# losses as world 1 to 1e-4 relative over 20 steps of a tiny model, and the same validation loss; summary.json
# names ep_size and dp_size. With a capacity factor, capacity is per group: the losses depend on the number of
# groups (dp_size) only. A checkpoint saved at world 4 in groups of 2 holds every expert once (written by group 0
# only) and loads in eval; an --ep-size that does not divide the world is one error line, exit 2.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
read -r -a mpiexec <<<"$MPIEXEC"
# 8 experts, top-2, 2 layers of d_model 32: small enough for 4 busy-polling MPICH ranks on 2 cores. 8 windows
# of 80 tokens: world 1's 640 rows run the LM head in two chunks (512 rows at most), world 2's and 4's in one.
tiny=(--steps 20 --batch 8 --ctx 80 --eval-every 10 -q
      --set model.d_model=32 --set model.d_ff=32 --set model.num_layers=2 --set model.num_heads=2
      --set model.num_kv_heads=1 --set model.head_dim=16 --set model.num_experts=8 --set model.top_k=2
      --set train.warmup_steps=2 --set train.val_windows=8)

layouts=("1 0" "2 1" "2 2" "4 1" "4 2" "4 4")  # "world ep_size"; 0 = the world (pure EP)
for layout in "${layouts[@]}"; do
    read -r np ep <<<"$layout"
    save=()
    [ "$layout" = "4 2" ] && save=(--save "$cli_tmp/ck")
    expect_exit 0 "${mpiexec[@]}" -np "$np" "$EPMOE" train "${tiny[@]}" --ep-size "$ep" \
        --out "$cli_tmp/w${np}e${ep}" "${save[@]}"
done

if python3 - "$cli_tmp" "${layouts[@]}" <<'PY'
import json, sys
tmp, layouts = sys.argv[1], [l.split() for l in sys.argv[2:]]
logs = {(n, e): [json.loads(l) for l in open(f"{tmp}/w{n}e{e}/train_log.jsonl")] for n, e in layouts}
ref = logs[("1", "0")]
assert len(ref) == 20 and ref[-1]["lm_loss"] < ref[0]["lm_loss"] - 0.5, (len(ref), ref[0], ref[-1])
assert all(l["aux_loss"] > 0.9 for l in ref), "HF's aux loss is E * sum F P >= ~1"
worst_all = 0.0
for (n, e), log in logs.items():
    s = json.load(open(f"{tmp}/w{n}e{e}/summary.json"))
    want = int(e) if e != "0" else int(n)
    assert (s["ranks"], s["ep_size"], s["dp_size"]) == (int(n), want, int(n) // want), s
    assert len(log) == 20 and [l["tokens"] for l in log] == [l["tokens"] for l in ref]
    rel = lambda a, b: abs(a / b - 1)
    per_step = [max(rel(a["lm_loss"], b["lm_loss"]), rel(a["aux_loss"], b["aux_loss"])) for a, b in zip(log, ref)]
    val = max(rel(a["val_loss"], b["val_loss"]) for a, b in zip(log, ref) if "val_loss" in b)
    worst = max(per_step + [val])
    worst_all = max(worst_all, worst)
    norm0 = rel(log[0]["grad_norm"], ref[0]["grad_norm"])
    print(f"world {n} ep_size {want}: max rel diff of lm/aux loss {max(per_step):.2g} (step 0 {per_step[0]:.2g}, "
          f"step 19 {per_step[-1]:.2g}), val {val:.2g}, grad norm step 0 {norm0:.2g}")
    assert worst < 1e-4, (n, e, per_step, val)
print(f"worst over every layout {worst_all:.2g}")
PY
then pass "  the same losses at world 1, 2, 4 and every ep_size"
else fail_check "losses depend on the layout"; fi

# Capacity 1.0, counted per group: dp_size 1 (world 1; world 4 in one group of 4) and dp_size 2 (world 2 in
# groups of 1; world 4 in groups of 2) each give one curve; the two differ (each group drops on its own tokens).
for layout in "1 0" "4 4" "2 1" "4 2"; do
    read -r np ep <<<"$layout"
    expect_exit 0 "${mpiexec[@]}" -np "$np" "$EPMOE" train "${tiny[@]}" --ep-size "$ep" --capacity-factor 1 \
        --out "$cli_tmp/cap${np}e${ep}"
done
if python3 - "$cli_tmp" <<'PY'
import json, sys
log = lambda name: [json.loads(l) for l in open(f"{sys.argv[1]}/{name}/train_log.jsonl")]
rel = lambda a, b: max(abs(x[k] / y[k] - 1) for x, y in zip(a, b) for k in ("lm_loss", "aux_loss"))
dp1, dp1b, dp2, dp2b = log("cap1e0"), log("cap4e4"), log("cap2e1"), log("cap4e2")
assert all(l["drop_rate"] > 0 for l in dp1 + dp2), [l["drop_rate"] for l in dp1 + dp2]
assert [l["drop_rate"] for l in dp1] == [l["drop_rate"] for l in dp1b], "dp_size 1: the same drops"
assert [l["drop_rate"] for l in dp2] == [l["drop_rate"] for l in dp2b], "dp_size 2: the same drops"
same1, same2, apart = rel(dp1, dp1b), rel(dp2, dp2b), rel(dp1, dp2)
print(f"capacity 1: dp_size 1 pair {same1:.2g}, dp_size 2 pair {same2:.2g}, dp_size 1 vs 2 {apart:.2g}")
assert same1 < 1e-4 and same2 < 1e-4 and apart > 1e-3, (same1, same2, apart)
assert dp1[0]["drop_rate"] != dp2[0]["drop_rate"], (dp1[0], dp2[0])
PY
then pass "  capacity per group: the curve depends on dp_size only"
else fail_check "capacity under groups"; fi

# The checkpoint of world 4 in 2 groups of 2: rank 0 (replicated tensors, its experts) and rank 1 (its experts)
# write; group 1 writes nothing; each expert once.
if python3 - "$cli_tmp/ck" <<'PY'
import glob, json, struct, sys
ck = sys.argv[1]
index = json.load(open(f"{ck}/model.safetensors.index.json"))["weight_map"]
names = []
for f in sorted(glob.glob(f"{ck}/*.safetensors")):
    with open(f, "rb") as h:
        n = struct.unpack("<Q", h.read(8))[0]
        names += [k for k in json.loads(h.read(n)) if k != "__metadata__"]
experts = [k for k in names if ".experts." in k]
assert len(glob.glob(f"{ck}/*.safetensors")) == 2, glob.glob(f"{ck}/*")
assert len(names) == len(set(names)) == len(index), (len(names), len(set(names)), len(index))
assert len(experts) == 2 * 8 * 3, len(experts)  # 2 layers x 8 experts x (w1, w2, w3)
print(f"{len(names)} tensors in 2 shards, {len(experts)} expert matrices, each once")
PY
then pass "  checkpoint: every expert written once, by group 0"
else fail_check "checkpoint of world 4, ep_size 2"; fi
expect_exit 0 "${mpiexec[@]}" -np 1 "$EPMOE" eval -q --model "$cli_tmp/ck" --energy-source none --out "$cli_tmp/ev"

bad() {  # bad NP TEXT ARGS...: epmoe train ARGS at NP ranks exits 2 with one error line naming TEXT
    local np=$1 text=$2
    shift 2
    expect_exit 2 "${mpiexec[@]}" -np "$np" "$EPMOE" train "${tiny[@]}" --out "$cli_tmp/bad" "$@"
    expect_one_error_line
    if grep "^epmoe: error:" "$err_file" | grep -qF -- "$text"; then pass "  names '$text'"
    else fail_check "lacks '$text'"; fi
}
bad 2 "train.ep_size 3" --ep-size 3
bad 2 "train.ep_size 4" --ep-size 4
bad 1 "train.ep_size" --ep-size -1
finish
