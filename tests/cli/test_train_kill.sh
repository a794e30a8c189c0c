#!/usr/bin/env bash
# epmoe train --save-every 1 at 2 ranks, every process of the job killed (SIGKILL) at 6 moments: each time the
# checkpoint directory is absent (killed before the first save) or whole (its marker, config.json and index, every
# shard the index names holding the tensors it lists, trainer_state.json and the optimizer's moments), never half
# written, and the next run (a new one, replacing it, until the last) starts; --resume continues from the last one.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
read -r -a mpiexec <<<"$MPIEXEC"
ck=$cli_tmp/ck
run=(--batch 2 --ctx 16 --eval-every 0 --save-every 1 --set train.val_windows=1 --set train.decay_steps=100000 --save "$ck")

whole() {  # whole DIR: exits 0 when DIR is a complete checkpoint, printing its step
    python3 - "$1" <<'PY'
import json, os, struct, sys
d = sys.argv[1]
for f in ("epmoe_checkpoint.json", "config.json", "model.safetensors.index.json", "trainer_state.json"):
    assert os.path.isfile(f"{d}/{f}"), f"no {f}"
listed = {}
for name, f in json.load(open(f"{d}/model.safetensors.index.json"))["weight_map"].items():
    listed.setdefault(f, set()).add(name)
for f, names in listed.items():
    with open(f"{d}/{f}", "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
        end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    assert names <= set(header), (f, sorted(names - set(header))[:3])
    assert os.path.getsize(f"{d}/{f}") == 8 + n + end, f
moments = [f for f in os.listdir(f"{d}/optimizer") if f.endswith(".safetensors")]
assert len(moments) == 2, moments
print(json.load(open(f"{d}/trainer_state.json"))["step"])
PY
}

seen=0
for delay in 0.8 1.1 1.4 1.7 2.1 2.6; do
    # setsid: the job in a session of its own, so that every rank and launcher process is killed at once
    setsid "${mpiexec[@]}" -np 2 "$EPMOE" train -q --steps 100000 "${run[@]}" --out "$cli_tmp/out-$delay" \
        </dev/null >"$cli_tmp/log-$delay" 2>&1 &
    job=$!
    sleep "$delay"
    pkill -KILL -s "$job"
    wait "$job" 2>/dev/null
    sleep 0.2
    if grep -q "epmoe: error" "$cli_tmp/log-$delay"; then
        fail_check "the run killed at ${delay} s had failed: $(grep "epmoe: error" "$cli_tmp/log-$delay" | head -n 1)"
    elif [ ! -e "$ck" ]; then
        pass "  killed at ${delay} s: no checkpoint yet"
    elif step=$(whole "$ck" 2>"$cli_tmp/why"); then
        pass "  killed at ${delay} s: the checkpoint is whole (step $step)"
        seen=$step
    else
        fail_check "killed at ${delay} s: half a checkpoint: $(tail -n 1 "$cli_tmp/why")"
    fi
done
if [ "$seen" -gt 0 ]; then
    expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" train -q --steps $((seen + 2)) "${run[@]}" --resume "$ck" \
        --out "$cli_tmp/resumed"
    if [ "$(whole "$ck")" = $((seen + 2)) ]; then pass "  --resume went on from step $seen"
    else fail_check "resume from step $seen"; fi
else
    fail_check "no kill came after a save: no checkpoint to check (the runs' log: $(tail -n 2 "$cli_tmp/log-2.6"))"
fi
finish
