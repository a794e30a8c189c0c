#!/usr/bin/env bash
# Bad inputs of the whole-model commands: exit 2 at 2 ranks, one `epmoe: error:` line naming the file and the
# key, tensor, flag or position, no summary.json. Corrupt copies of the transformers-written mixtral fixture
# are made here, in a scratch folder.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
read -r -a mpiexec <<<"$MPIEXEC"
good=$EPMOE_SOURCE_DIR/tests/fixtures/models/mixtral
ids=$good/input_ids.safetensors

bad() {  # bad COMMAND TEXT ARGS...: epmoe COMMAND ARGS at 2 ranks exits 2 with one error line, TEXT in it
    local command=$1 text=$2
    shift 2
    rm -rf "$cli_tmp/out"
    expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" "$command" -q --energy-source none --out "$cli_tmp/out" "$@"
    expect_one_error_line
    if grep "^epmoe: error:" "$err_file" | grep -qF -- "$text"; then pass "  the error names '$text'"
    else fail_check "the error line lacks '$text'"; fi
    if [ ! -e "$cli_tmp/out/summary.json" ]; then pass "  no summary.json"; else fail_check "a summary.json was left"; fi
}

# A copy of the fixture with config.json edited by a Python expression on `c`, and tensors left out.
variant() {  # variant NAME 'python statement on c' [TENSOR_TO_DROP]
    local dir=$cli_tmp/$1
    mkdir -p "$dir"
    python3 - "$here" "$good" "$dir" "$2" "${3:-}" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
from st_read import read, write
good, dir, edit, drop = sys.argv[2:6]
c = json.load(open(good + "/config.json"))
exec(edit)
json.dump(c, open(dir + "/config.json", "w"))
t = read(good + "/model.safetensors")
write(dir + "/model.safetensors", {k: ("F32", s, v) for k, (s, v) in t.items() if k != drop})
PY
}

variant no_k 'pass' model.layers.1.self_attn.k_proj.weight
bad eval "$cli_tmp/no_k/model.safetensors: missing tensor model.layers.1.self_attn.k_proj.weight" \
    --model "$cli_tmp/no_k" --tokens "$ids" --ctx 10
variant kv_heads 'c["num_key_value_heads"] = 1'
bad eval "tensor model.layers.0.self_attn.k_proj.weight has shape [16, 32], expected [8, 32]" \
    --model "$cli_tmp/kv_heads" --tokens "$ids" --ctx 10
variant kv3 'c["num_key_value_heads"] = 3'
bad generate "num_key_value_heads" --model "$cli_tmp/kv3" --tokens "$ids"
variant scaling 'c["rope_parameters"] = {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6}'
bad eval "rope" --model "$cli_tmp/scaling" --tokens "$ids" --ctx 10

# token files
python3 - "$here" "$cli_tmp" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from st_read import write
write(sys.argv[2] + "/high.safetensors", {"input_ids": ("I32", [2, 4], [1, 2, 3, 4, 5, 6, 128, 7])})
open(sys.argv[2] + "/empty.bin", "wb").close()
open(sys.argv[2] + "/five.bin", "wb").write(bytes([1, 0, 2, 0, 3, 0, 4, 0, 5, 0]))
PY
bad eval "$cli_tmp/high.safetensors" --model "$good" --tokens "$cli_tmp/high.safetensors" --ctx 4
expect_stderr_has "128"
bad generate "$cli_tmp/high.safetensors" --model "$good" --tokens "$cli_tmp/high.safetensors"
bad eval "$cli_tmp/empty.bin" --model "$good" --tokens "$cli_tmp/empty.bin"
bad eval "--ctx 10 is larger than the token stream $cli_tmp/five.bin" --model "$good" --tokens "$cli_tmp/five.bin" \
    --ctx 10
bad eval "text.stride = 11: must be <= 10" --model "$good" --tokens "$ids" --ctx 10 --stride 11
bad eval "text.stride" --model "$good" --tokens "$ids" --ctx 10 --stride -1
bad eval "--dump-logits needs a [B, S] token input" --model "$good" --tokens "$cli_tmp/five.bin" --ctx 4 \
    --dump-logits "$cli_tmp/x.safetensors"
bad eval "model.layers" --model "$good" --tokens "$ids" --set model.layers=0-0
bad generate "generate.top_p" --model "$good" --tokens "$ids" --temperature 1 --top-p 0
bad generate "generate.max_new_tokens" --model "$good" --tokens "$ids" --max-new-tokens 0
bad eval "not a token file" --model "$good" --tokens "$good/config.json"
finish
