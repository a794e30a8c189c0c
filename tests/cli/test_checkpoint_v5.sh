#!/usr/bin/env bash
# Checkpoints saved by Hugging Face transformers 5 itself (tests/fixtures/checkpoints/make_hf_v5.py): `epmoe run
# --model DIR --input FILE --dump-output` at 1 and 2 ranks against the outputs of the model's own modules, for
# Qwen3-MoE as v5 saves it by default (config.json's num_local_experts) and the fused experts layout of every
# family (mlp.experts.gate_up_proj / down_proj); each rank converting only its experts' slices of a fused tensor;
# a layer with both layouts or half a fused pair refused with exit 2, naming the tensor.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
read -r -a mpiexec <<<"$MPIEXEC"
fixtures=${EPMOE_FIXTURES:-$EPMOE_SOURCE_DIR/tests/fixtures}/checkpoints
common=(-q --steps 2 --energy-source none)

compare() {  # compare OUT EXPECTED LABEL
    if python3 "$here/st_read.py" compare "$1" "$2" >"$cli_tmp/cmp"; then pass "  $3: $(cat "$cli_tmp/cmp")"
    else fail_check "$3: $(cat "$cli_tmp/cmp")"; fi
}

# The bytes each rank must convert (contiguous placement), from the safetensors header: norm, router and
# shared expert whole; of the experts, the rank's own: whole per-expert tensors, or 1/E of a fused one each.
check_memory() {  # check_memory DIR FIXTURE NP
    if python3 - "$1/summary.json" "$2" "$3" <<'PY' >"$cli_tmp/mem"
import json, os, re, struct, sys
summary, folder, ranks = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
cfg = json.load(open(os.path.join(folder, "config.json")))
data = open(os.path.join(folder, "model.safetensors"), "rb").read()
(n,) = struct.unpack("<Q", data[:8])
sizes = {k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in json.loads(data[8:8 + n]).items()
         if k != "__metadata__"}
experts = cfg.get("num_local_experts", cfg.get("num_experts"))
want = []
for r in range(ranks):
    owned = sum(1 for e in range(experts) if e * ranks // experts == r)
    total = 0
    for k, b in sizes.items():
        m = re.search(r"\.experts\.(\d+)\.", k)
        if m:
            total += b if int(m.group(1)) * ranks // experts == r else 0
        elif re.search(r"\.experts\.(gate_up_proj|down_proj)$", k):
            total += b // experts * owned
        elif re.search(r"(post_attention_layernorm|mlp|block_sparse_moe)\.", k):
            total += b
    want.append(total)
got = summary["memory"]["checkpoint_bytes_read_per_rank"]
print(f"bytes read per rank {got}, expected {want}")
sys.exit(0 if got == want else 1)
PY
    then pass "  $2 at $3 ranks: $(cat "$cli_tmp/mem")"
    else fail_check "$2 at $3 ranks: $(cat "$cli_tmp/mem")"; fi
}

# 1. Every v5 fixture at 1 and 2 ranks matches transformers 5's modules; each rank reads only its shard.
for fx in qwen3_moe_v5 qwen3_moe_v5_fused mixtral_v5_fused olmoe_v5_fused qwen2_moe_v5_fused; do
    for np in 1 2; do
        out=$cli_tmp/$fx-$np
        expect_exit 0 "${mpiexec[@]}" -np $np "$EPMOE" run "${common[@]}" --model "$fixtures/$fx" \
            --input "$fixtures/$fx/input.safetensors" --out "$out" --dump-output "$out.safetensors"
        compare "$out.safetensors" "$fixtures/$fx/expected.safetensors" "$fx at $np ranks"
        check_memory "$out" "$fixtures/$fx" $np
    done
done
if python3 - "$cli_tmp/qwen3_moe_v5_fused-2/summary.json" "$cli_tmp/qwen3_moe_v5-2/summary.json" <<'PY'
import json, sys
fused, split = (json.load(open(p)) for p in sys.argv[1:])
m = fused["model"]
assert m["family"] == "qwen3_moe" and m["num_experts"] == 4 and m["top_k"] == 2 and m["norm_topk_prob"] is True, m
for key in ("checkpoint_bytes_read_per_rank", "weight_bytes_per_rank"):
    assert fused["memory"][key] == split["memory"][key], (key, fused["memory"], split["memory"])
PY
then pass "  fused and per-expert saves of one model: same family, sizes and bytes per rank"
else fail_check "fused vs per-expert summary.json"; fi

# 2. inspect reads the same bytes per rank from the fused layout as the run did.
expect_exit 0 "$EPMOE" inspect "$fixtures/mixtral_v5_fused" --json --ranks 2
if python3 - "$out_file" "$cli_tmp/mixtral_v5_fused-2/summary.json" <<'PY'
import json, sys
d, s = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert d["family"] == "mixtral" and d["num_experts"] == 4, d
assert d["checkpoint_bytes_per_rank"] == s["memory"]["checkpoint_bytes_read_per_rank"], d
PY
then pass "  inspect --json: the run's bytes per rank"; else fail_check "inspect --json on a fused checkpoint"; fi

# 3. Bad layouts: exit 2 at 2 ranks, one error line naming the file and the tensor, no summary.json.
edit_tensors() {  # edit_tensors FILE PYTHON: runs PYTHON on the safetensors header `h` (a dict), rewrites FILE
    python3 - "$1" "$2" <<'PY'
import json, struct, sys
path, code = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
(n,) = struct.unpack("<Q", data[:8])
h = json.loads(data[8:8 + n])
exec(code)
text = json.dumps(h).encode()
text += b" " * ((8 - len(text) % 8) % 8)
open(path, "wb").write(struct.pack("<Q", len(text)) + text + data[8 + n:])
PY
}
bad() {  # bad TEXT DIR: epmoe run --model DIR at 2 ranks exits 2 with one error line containing TEXT
    rm -rf "$cli_tmp/out"
    expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" run -q --steps 1 --energy-source none --out "$cli_tmp/out" --model "$2"
    expect_stderr_has "epmoe: error: $1"
    expect_one_error_line
    if [ ! -e "$cli_tmp/out/summary.json" ]; then pass "  no summary.json"; else fail_check "a summary.json was left"; fi
}
q=model.layers.1.mlp.experts
d=$cli_tmp/half && cp -r "$fixtures/qwen3_moe_v5_fused" "$d"
edit_tensors "$d/model.safetensors" "h['unused'] = h.pop('$q.down_proj')"
bad "$d/model.safetensors: tensor $q.gate_up_proj has no $q.down_proj beside it" "$d"
d=$cli_tmp/both && cp -r "$fixtures/qwen3_moe_v5_fused" "$d"
edit_tensors "$d/model.safetensors" "h['$q.0.gate_proj.weight'] = h.pop('model.layers.1.self_attn.q_proj.weight')"
bad "$d/model.safetensors: layer 1 holds both fused experts ($q.gate_up_proj) and per-expert tensors ($q.0.gate_proj.weight)" "$d"

finish
