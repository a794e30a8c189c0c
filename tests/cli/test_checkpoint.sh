#!/usr/bin/env bash
# `epmoe run --model DIR --input FILE` against outputs computed by an independent torch implementation of
# Hugging Face's MoE blocks (tests/fixtures/checkpoints/make_checkpoints.py) at 1, 2 and 3 ranks: Mixtral
# sharded, OLMoE in BF16, Qwen2-MoE with a shared expert and a dense layer, tied gate logits; --layers;
# each rank converting exactly its shard's bytes (summary.json memory); rank 0's load progress; `epmoe inspect`.
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

# The shard bytes each rank must convert (contiguous placement), summed from the safetensors headers:
# norm, gate, shared expert and dense MLP of every layer, plus the rank's own experts; nothing else.
check_memory() {  # check_memory DIR FIXTURE NP
    if python3 - "$1/summary.json" "$2" "$3" <<'PY' >"$cli_tmp/mem"
import json, os, re, struct, sys
summary, folder, ranks = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
cfg = json.load(open(os.path.join(folder, "config.json")))
sizes = {}
for f in os.listdir(folder):
    if f.startswith("model") and f.endswith(".safetensors"):
        data = open(os.path.join(folder, f), "rb").read()
        (n,) = struct.unpack("<Q", data[:8])
        for k, v in json.loads(data[8:8 + n]).items():
            if k != "__metadata__":
                sizes[k] = v["data_offsets"][1] - v["data_offsets"][0]
experts = cfg.get("num_local_experts", cfg.get("num_experts"))
want = []
for r in range(ranks):
    total = 0
    for k, b in sizes.items():
        m = re.search(r"\.experts\.(\d+)\.", k)
        if m:
            total += b if int(m.group(1)) * ranks // experts == r else 0
        elif re.search(r"(post_attention_layernorm|mlp|block_sparse_moe)\.", k):
            total += b
    want.append(total)
got = summary["memory"]["checkpoint_bytes_read_per_rank"]
print(f"bytes read per rank {got}, expected {want}")
sys.exit(0 if got == want and len(summary["memory"]["weight_bytes_per_rank"]) == ranks else 1)
PY
    then pass "  $2 at $3 ranks: $(cat "$cli_tmp/mem")"
    else fail_check "$2 at $3 ranks: $(cat "$cli_tmp/mem")"; fi
}

# 1. Every fixture at 1, 2 and 3 ranks matches the torch reference; each rank reads only its shard.
for fx in mixtral_sharded olmoe_bf16 qwen2_moe_shared mixtral_tied; do
    for np in 1 2 3; do
        out=$cli_tmp/$fx-$np
        expect_exit 0 "${mpiexec[@]}" -np $np "$EPMOE" run "${common[@]}" --model "$fixtures/$fx" \
            --input "$fixtures/$fx/input.safetensors" --out "$out" --dump-output "$out.safetensors"
        compare "$out.safetensors" "$fixtures/$fx/expected.safetensors" "$fx at $np ranks"
        check_memory "$out" "$fixtures/$fx" $np
    done
done
if python3 - "$cli_tmp/qwen2_moe_shared-2/summary.json" "$fixtures/qwen2_moe_shared" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["model"]
assert m["source"] == "checkpoint" and m["family"] == "qwen2_moe" and m["path"] == sys.argv[2], m
assert m["layers"] == "0-2" and m["layer_kinds"] == ["moe+shared", "dense", "moe+shared"], m
assert m["norm_topk_prob"] is False and m["num_experts"] == 6 and m["top_k"] == 2, m
PY
then pass "  summary.json model: family, path, layers"; else fail_check "summary.json model"; fi

# 2. --layers 1-2 runs that stack alone.
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" run "${common[@]}" --model "$fixtures/mixtral_sharded" --layers 1-2 \
    --input "$fixtures/mixtral_sharded/input.safetensors" --out "$cli_tmp/sub" --dump-output "$cli_tmp/sub.safetensors"
compare "$cli_tmp/sub.safetensors" "$fixtures/mixtral_sharded/expected_layers_1-2.safetensors" "--layers 1-2"

# Rank 0 says how far a checkpoint's load has got (here after every layer: an interval of a microsecond).
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" run --steps 1 --energy-source none --model "$fixtures/mixtral_sharded" \
    --input "$fixtures/mixtral_sharded/input.safetensors" --set output.progress_interval_s=0.000001 --out "$cli_tmp/lp"
expect_stderr_has "epmoe: loading "
expect_stderr_has "mixtral_sharded: layer 1 of "
layers=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['num_hidden_layers'])" \
    "$fixtures/mixtral_sharded/config.json")
if [ "$(grep -c '^epmoe: loading ' "$err_file")" -eq $((layers - 1)) ]; then
    pass "  load progress: $((layers - 1)) lines for $layers layers (rank 0 alone, none after the last)"
else fail_check "load progress lines: $(grep 'epmoe: loading' "$err_file" | head -5)"; fi

# 3. One .safetensors file with no config.json beside it: sizes from the model.* keys, family from the names.
mkdir -p "$cli_tmp/lone" && cp "$fixtures/mixtral_tied/model.safetensors" "$cli_tmp/lone/tied.safetensors"
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" run "${common[@]}" --model "$cli_tmp/lone/tied.safetensors" \
    --set model.d_model=16 --set model.d_ff=16 --set model.num_experts=4 --set model.top_k=2 \
    --set model.rms_norm_eps=1e-5 --input "$fixtures/mixtral_tied/input.safetensors" --out "$cli_tmp/lone/out" \
    --dump-output "$cli_tmp/lone.safetensors"
compare "$cli_tmp/lone.safetensors" "$fixtures/mixtral_tied/expected.safetensors" "lone .safetensors with model.* keys"
expect_exit 2 "$EPMOE" run "${common[@]}" --model "$cli_tmp/lone/tied.safetensors" --out "$cli_tmp/lone/bad"
expect_stderr_has "tied.safetensors: tensor model.layers.0.post_attention_layernorm.weight has shape [16], expected [512] from the model.* config keys"

# 4. A checkpoint with the synthetic workload runs too (d_model from config.json).
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" run "${common[@]}" --model "$fixtures/olmoe_bf16" --tokens-per-rank 5 \
    --out "$cli_tmp/synthetic_tokens"

# 5. inspect: text and JSON, per-rank bytes for --ranks 3 equal to what the runs above read.
expect_exit 0 "$EPMOE" inspect "$fixtures/qwen2_moe_shared" --ranks 3
expect_stdout_has "family          qwen2_moe"
expect_stdout_has "layers          3: 0 moe+shared 1 dense 2 moe+shared"
expect_stdout_has "d_ff            24 (dense 56, shared expert 40)"
expect_stdout_has "gate            softmax, norm_topk_prob false, rms_norm_eps 1e-06"
# inspect's weight bytes are F32 as loaded: what openblas/fp32 holds (onednn/fp32 packs them into its blocks, padded
# at these small shapes).
expect_exit 0 "${mpiexec[@]}" -np 3 "$EPMOE" run "${common[@]}" --model "$fixtures/olmoe_bf16" \
    --set compute.backend=openblas --input "$fixtures/olmoe_bf16/input.safetensors" --out "$cli_tmp/olmoe_bf16-3-openblas"
expect_exit 0 "$EPMOE" inspect "$fixtures/olmoe_bf16" --json --ranks 3
if python3 - "$out_file" "$cli_tmp/olmoe_bf16-3-openblas/summary.json" <<'PY'
import json, sys
d, s = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert d["family"] == "olmoe" and d["num_experts"] == 8 and d["top_k"] == 2 and d["d_model"] == 32, d
assert d["dtypes"] == {"BF16": len(d["dtypes"]) and d["dtypes"]["BF16"]} and d["norm_topk_prob"] is False, d
assert d["checkpoint_bytes_per_rank"] == s["memory"]["checkpoint_bytes_read_per_rank"], d
assert d["weight_bytes_per_rank"] == s["memory"]["weight_bytes_per_rank"], d
assert d["total_bytes"] > sum(d["checkpoint_bytes_per_rank"]) / 3, d
PY
then pass "  inspect --json agrees with the run's bytes per rank"; else fail_check "inspect --json"; fi
expect_exit 2 "$EPMOE" inspect "$cli_tmp/nowhere"
expect_stderr_has "epmoe: error: $cli_tmp/nowhere"

finish
