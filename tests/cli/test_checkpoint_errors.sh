#!/usr/bin/env bash
# Bad checkpoints and inputs: exit 2 at 2 ranks, one `epmoe: error:` line naming the file and the key or
# tensor, no summary.json. Corrupt copies of the good fixtures are made here, in a scratch folder.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
read -r -a mpiexec <<<"$MPIEXEC"
fixtures=${EPMOE_FIXTURES:-$EPMOE_SOURCE_DIR/tests/fixtures}/checkpoints

bad() {  # bad TEXT ARGS...: epmoe run ARGS at 2 ranks exits 2 with one error line containing TEXT
    local text=$1
    shift
    rm -rf "$cli_tmp/out"
    expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" run -q --steps 1 --energy-source none --out "$cli_tmp/out" "$@"
    expect_stderr_has "epmoe: error: $text"
    expect_one_error_line
    if [ ! -e "$cli_tmp/out/summary.json" ]; then pass "  no summary.json"; else fail_check "a summary.json was left"; fi
}
copy() {  # copy FIXTURE NAME: a fresh copy of a fixture folder; prints its path
    rm -rf "${cli_tmp:?}/$2"
    cp -r "$fixtures/$1" "$cli_tmp/$2"
    echo "$cli_tmp/$2"
}
edit_json() {  # edit_json FILE PYTHON: runs PYTHON on the JSON object `j` of FILE and writes it back
    python3 -c "import json,sys; p=sys.argv[1]; j=json.load(open(p)); $2; json.dump(j, open(p, 'w'))" "$1"
}
edit_header() {  # edit_header FILE PYTHON: runs PYTHON on the safetensors header `h` (a dict), rewrites FILE
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
mix=model.layers.0.block_sparse_moe

# config.json: a missing key, an unknown model_type, bad JSON.
d=$(copy mixtral_tied no_key); edit_json "$d/config.json" "del j['hidden_size']"
bad "$d/config.json: missing key 'hidden_size'" --model "$d"
d=$(copy mixtral_tied llama); edit_json "$d/config.json" "j['model_type'] = 'llama'"
bad "$d/config.json: model_type \"llama\" is not supported" --model "$d"
d=$(copy qwen2_moe_shared no_shared_size); edit_json "$d/config.json" "del j['shared_expert_intermediate_size']"
bad "$d/config.json: missing key 'shared_expert_intermediate_size'" --model "$d"
d=$(copy mixtral_tied bad_json); echo '{"model_type": "mixtral",' >"$d/config.json"
bad "$d/config.json: not valid JSON" --model "$d"

# A shape disagreeing with config.json; a missing tensor (index and single file); a non-float dtype.
d=$(copy mixtral_tied shape); edit_json "$d/config.json" "j['intermediate_size'] = 12"
bad "$d/model.safetensors: tensor $mix.experts.0.w1.weight has shape [16, 16], expected [12, 16] from $d/config.json" \
    --model "$d"
d=$(copy mixtral_sharded index_missing)
edit_json "$d/model.safetensors.index.json" "del j['weight_map']['model.layers.2.block_sparse_moe.experts.3.w2.weight']"
bad "$d/model.safetensors.index.json: missing tensor model.layers.2.block_sparse_moe.experts.3.w2.weight" --model "$d"
d=$(copy olmoe_bf16 file_missing)
edit_header "$d/model.safetensors" "h['model.layers.1.mlp.gate.renamed'] = h.pop('model.layers.1.mlp.gate.weight')"
bad "$d/model.safetensors: missing tensor model.layers.1.mlp.gate.weight" --model "$d"
d=$(copy mixtral_tied int_gate); edit_header "$d/model.safetensors" "h['$mix.gate.weight']['dtype'] = 'I32'"
bad "$d/model.safetensors: tensor $mix.gate.weight has dtype I32" --model "$d"

# Corrupt safetensors files: truncated, header length past the end, bad JSON, unknown dtype, overlapping
# and out-of-range offsets (in one shard of the sharded checkpoint).
shard=model-00002-of-00002.safetensors
d=$(copy mixtral_sharded truncated); truncate -s -100 "$d/$shard"
bad "$d/$shard: " --model "$d"
expect_stderr_has "truncated"
d=$(copy mixtral_sharded header_len); printf '\xff\xff\xff\x00\x00\x00\x00\x00' | dd of="$d/$shard" conv=notrunc status=none
bad "$d/$shard: header length 16777215 bytes runs past the end of the file" --model "$d"
d=$(copy mixtral_sharded header_json); printf 'X' | dd of="$d/$shard" bs=1 seek=8 conv=notrunc status=none
bad "$d/$shard: header is not valid JSON" --model "$d"
d=$(copy mixtral_tied dtype); edit_header "$d/model.safetensors" "h['$mix.gate.weight']['dtype'] = 'F8_E4M3'"
bad "$d/model.safetensors: tensor '$mix.gate.weight': dtype 'F8_E4M3'" --model "$d"
d=$(copy mixtral_tied overlap)
edit_header "$d/model.safetensors" "t = h['$mix.gate.weight']; b = t['data_offsets'][0]; t['data_offsets'] = [b - 8, b - 8 + 256]"
bad "$d/model.safetensors: " --model "$d"
expect_stderr_has "$mix.gate.weight"
d=$(copy mixtral_tied range)
edit_header "$d/model.safetensors" "t = h['$mix.gate.weight']; t['data_offsets'] = [10**9, 10**9 + 256]"
bad "$d/model.safetensors: tensor '$mix.gate.weight': data_offsets" --model "$d"
expect_stderr_has "run past the end of the data buffer"

# --input: d_model mismatch, NaN and Inf, no hidden_states tensor; --layers out of range.
bad "$fixtures/olmoe_bf16/input.safetensors: tensor hidden_states has shape [11, 32], expected [T, 16]" \
    --model "$fixtures/mixtral_tied" --input "$fixtures/olmoe_bf16/input.safetensors"
cp "$fixtures/mixtral_tied/input.safetensors" "$cli_tmp/nan.safetensors"
python3 - "$cli_tmp/nan.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]
data = bytearray(open(p, "rb").read())
(n,) = struct.unpack("<Q", data[:8])
data[8 + n + 4 * (9 * 16 + 5):][:4] = struct.pack("<f", float("nan"))  # row 9 (rank 1's rows at 2 ranks)
data[8 + n + 4 * (9 * 16 + 5):8 + n + 4 * (9 * 16 + 6)] = struct.pack("<f", float("nan"))
open(p, "wb").write(data)
PY
bad "$cli_tmp/nan.safetensors: tensor hidden_states row 9 column 5 is nan" --model "$fixtures/mixtral_tied" \
    --input "$cli_tmp/nan.safetensors"
cp "$cli_tmp/nan.safetensors" "$cli_tmp/inf.safetensors"
edit_header "$cli_tmp/inf.safetensors" "h['other'] = h.pop('hidden_states')"
bad "$cli_tmp/inf.safetensors: " --model "$fixtures/mixtral_tied" --input "$cli_tmp/inf.safetensors"
expect_stderr_has "hidden_states"
bad "model.layers = \"1-3\": the checkpoint has 2 layers" --model "$fixtures/mixtral_tied" --layers 1-3
bad "model.layers = \"x\"" --model "$fixtures/mixtral_tied" --layers x
bad "$cli_tmp/none: cannot open" --model "$cli_tmp/none"

finish
