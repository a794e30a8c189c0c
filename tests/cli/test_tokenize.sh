#!/usr/bin/env bash
# Text in and out: `epmoe tokenize` (at 1, 2 and 3 ranks: the same bytes) writes the ids Hugging Face's tokenizers gave for the fixtures' texts
# (tests/fixtures/tokenizers/*/expected.json: .safetensors and .bin, with and without special tokens, a
# tokenizer.model-only directory, invalid UTF-8); `eval --text` and `generate --text` (lines and JSONL) run end
# to end on the synthetic model with a fixture tokenizer at 1 and 2 ranks, generated.jsonl holding the decoded
# text; bad input exits 2 with one `epmoe: error:` line naming the file and the field.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
read -r -a mpiexec <<<"$MPIEXEC"
fx=$EPMOE_SOURCE_DIR/tests/fixtures/tokenizers

# case_text KIND CASE FILE: writes the case's text (its bytes for a "hex" case) to FILE, exactly.
case_text() {
    python3 - "$fx/$1/expected.json" "$2" "$3" <<'PY'
import json, sys
c = next(c for c in json.load(open(sys.argv[1]))["cases"] if c["name"] == sys.argv[2])
open(sys.argv[3], "wb").write(bytes.fromhex(c["hex"]) if "hex" in c else c["text"].encode())
PY
}

# check_ids KIND CASE FIELD FILE [PREFIX_ID]: FILE's ids (.safetensors input_ids or .bin) equal expected FIELD.
check_ids() {
    if python3 - "$here" "$fx/$1/expected.json" "$2" "$3" "$4" "${5:-}" >"$cli_tmp/cmp" 2>&1 <<'PY'
import json, struct, sys
sys.path.insert(0, sys.argv[1])
from st_read import read
d = json.load(open(sys.argv[2]))
c = next(c for c in d["cases"] if c["name"] == sys.argv[3])
want = ([int(sys.argv[6])] if sys.argv[6] else []) + c[sys.argv[4]]
path = sys.argv[5]
if path.endswith(".bin"):
    raw = open(path, "rb").read()
    width = 2 if d["vocab_size"] <= 65536 else 4
    got = list(struct.unpack("<%d%s" % (len(raw) // width, "H" if width == 2 else "I"), raw))
else:
    shape, values = read(path)["input_ids"]
    got = list(values)
print(len(got), "ids")
assert got == want, (got[:20], want[:20])
PY
    then pass "  $1/$2: ids equal HF's ($(cat "$cli_tmp/cmp"))"; else fail_check "$1/$2 ids: $(tail -n 3 "$cli_tmp/cmp")"; fi
}

# 1. epmoe tokenize against the fixtures.
for kind in neox qwen2 llama metaspace; do
    for c in emoji newlines special_chat invalid_utf8 cjk; do
        case_text $kind $c "$cli_tmp/$c.txt"
        expect_exit 0 "$EPMOE" tokenize --model "$fx/$kind" --text "$cli_tmp/$c.txt" --out "$cli_tmp/$kind-$c.safetensors"
        check_ids $kind $c ids_special "$cli_tmp/$kind-$c.safetensors"
        expect_exit 0 "$EPMOE" tokenize --tokenizer "$fx/$kind/tokenizer.json" --text "$cli_tmp/$c.txt" \
            --out "$cli_tmp/$kind-$c.bin" --no-special
        check_ids $kind $c ids "$cli_tmp/$kind-$c.bin"
    done
done
expect_stdout_has "MB/s"
case_text llama invalid_utf8 "$cli_tmp/bad.txt"
expect_exit 0 "$EPMOE" tokenize --model "$fx/llama" --text "$cli_tmp/bad.txt" --out "$cli_tmp/bad.bin"
expect_stdout_has "invalid UTF-8 sequences read as U+FFFD"
case_text sp code "$cli_tmp/code.txt"
bos=$(python3 -c "import json;print(json.load(open('$fx/sp/expected.json'))['bos_id'])")
expect_exit 0 "$EPMOE" tokenize --model "$fx/sp" --text "$cli_tmp/code.txt" --out "$cli_tmp/sp.safetensors"
expect_stdout_has "SentencePiece"
check_ids sp code ids "$cli_tmp/sp.safetensors" "$bos"

# 1b. Over ranks: 1 and 3 ranks (and 2 for neox and sp) write byte-identical files for every fixture kind on a multi-line text with
# blank lines, indentation, CJK and special tokens (llama: no exact cut, one rank tokenizes it all).
python3 - "$cli_tmp/multi.txt" <<'PY2'
import sys
lines = ["The quick brown fox", "", "    def f(x):  return x * 2", "\t\tindented with tabs", "日本語のテキスト、中文文本。",
         "don't we'll 1234 3.14 café", "<|endoftext|> special <s> </s>", "  ", "x \ny", "end."]
open(sys.argv[1], "w").write("\n".join(lines[i % len(lines)] + " line %d" % i for i in range(600)) + "\n\n")
PY2
for kind in neox qwen2 llama metaspace sp; do
    nps="1 3"  # one cut and two; 2 ranks on one kind of each cut rule (the suite's time)
    case $kind in neox | sp) nps="1 2 3" ;; esac
    for np in $nps; do
        expect_exit 0 "${mpiexec[@]}" -np $np "$EPMOE" tokenize --model "$fx/$kind" --text "$cli_tmp/multi.txt" \
            --out "$cli_tmp/multi-$kind-$np.bin" --progress-interval 0.000001
    done
    if [ "$kind" = llama ]; then expect_stdout_has "one rank tokenized it all"; else expect_stdout_has "ranks' parts cut at"; fi
    if { [ ! -e "$cli_tmp/multi-$kind-2.bin" ] || cmp -s "$cli_tmp/multi-$kind-1.bin" "$cli_tmp/multi-$kind-2.bin"; } &&
        cmp -s "$cli_tmp/multi-$kind-1.bin" "$cli_tmp/multi-$kind-3.bin" && [ -s "$cli_tmp/multi-$kind-1.bin" ]; then
        pass "  $kind: ranks $nps byte-identical"
    else fail_check "$kind: files differ across rank counts"; fi
done
python3 -c "import sys; t = open(sys.argv[1]).read(); open(sys.argv[2], 'w').write(t * (2600000 // len(t) + 1))" \
    "$cli_tmp/multi.txt" "$cli_tmp/big.txt"  # 2.9 MB: a progress line after the first 1 MiB part
expect_exit 0 "$EPMOE" tokenize --model "$fx/neox" --text "$cli_tmp/big.txt" --out "$cli_tmp/p.bin" --progress-interval 0.000001
expect_stderr_has "epmoe tokenize: 1.0 / 2.9 MB, "
expect_stdout_has "MB/s"
if [ ! -e "$cli_tmp/p.bin.tmp" ]; then pass "  no temporary file left"; else fail_check "p.bin.tmp left behind"; fi
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" tokenize --model "$fx/neox" --text "$cli_tmp/big.txt" --out "$cli_tmp/q.bin" \
    -q --progress-interval 0.000001
if [ ! -s "$err_file" ]; then pass "  --quiet: nothing on stderr"; else fail_check "--quiet printed on stderr"; fi
if cmp -s "$cli_tmp/p.bin" "$cli_tmp/q.bin"; then pass "  2.9 MB in parts: 1 and 2 ranks byte-identical"
else fail_check "big.txt: 1 and 2 ranks differ"; fi

# 2. eval --text and generate --text on the synthetic model (vocabulary 1024 >= the fixtures').
small=(--set model.d_model=64 --set model.d_ff=96 --set model.num_layers=2 --set model.num_heads=4
       --set model.num_kv_heads=2 --set model.head_dim=16 --energy-source none -q)
python3 -c "import json;print(''.join(c.get('text','') for c in json.load(open('$fx/qwen2/expected.json'))['cases']))" \
    >"$cli_tmp/corpus.txt"
printf 'Hello world\nThe quick brown fox\n\n日本語のテキスト\n' >"$cli_tmp/prompts.txt"
printf '{"prompt": "Hello"}\n{"prompt": "def main(argv):\\n    return 0"}\n' >"$cli_tmp/prompts.jsonl"
for np in 1 2; do
    expect_exit 0 "${mpiexec[@]}" -np $np "$EPMOE" eval "${small[@]}" --tokenizer "$fx/qwen2" --text "$cli_tmp/corpus.txt" \
        --ctx 32 --out "$cli_tmp/eval$np"
    expect_stdout_has "perplexity"
    expect_exit 0 "${mpiexec[@]}" -np $np "$EPMOE" generate "${small[@]}" --tokenizer "$fx/llama" --text "$cli_tmp/prompts.txt" \
        --max-new-tokens 4 --out "$cli_tmp/gen$np"
    if python3 - "$cli_tmp/gen$np/generated.jsonl" >"$cli_tmp/cmp" 2>&1 <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) == 3, lines
assert all(isinstance(l["text"], str) and len(l["generated_ids"]) == 4 for l in lines), lines
assert len({l["prompt_len"] for l in lines}) > 1, lines  # each prompt has its own length
print([l["prompt_len"] for l in lines])
PY
    then pass "  generated.jsonl: 3 prompts with text $(cat "$cli_tmp/cmp")"; else fail_check "generated.jsonl: $(tail -n 2 "$cli_tmp/cmp")"; fi
done
expect_exit 0 "$EPMOE" generate "${small[@]}" --tokenizer "$fx/sp" --text "$cli_tmp/prompts.jsonl" --max-new-tokens 2 \
    --out "$cli_tmp/genj"
if [ "$(wc -l <"$cli_tmp/genj/generated.jsonl")" -eq 2 ]; then pass "  JSONL prompts: 2 lines"; else fail_check "JSONL prompts"; fi
expect_exit 0 "$EPMOE" tokenize --help
expect_stdout_has "--no-special"

# 3. Bad input: exit 2, one error line naming the file and the field.
bad() {  # bad TEXT CMD...
    local text=$1
    shift
    expect_exit 2 "$@"
    expect_one_error_line
    if grep "^epmoe: error:" "$err_file" | grep -qF -- "$text"; then pass "  the error names '$text'"
    else fail_check "the error line lacks '$text'"; fi
}
mkdir -p "$cli_tmp/broken"
python3 - "$fx/qwen2/tokenizer.json" "$cli_tmp/broken/tokenizer.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways"
json.dump(j, open(sys.argv[2], "w"))
PY
bad "tokenizer.json: pre_tokenizer.pretokenizers[0].behavior: unknown behavior Sideways" \
    "$EPMOE" tokenize --model "$cli_tmp/broken" --text "$cli_tmp/code.txt" --out "$cli_tmp/x.bin"
bad "tokenizer.json: pre_tokenizer.pretokenizers[0].behavior" "${mpiexec[@]}" -np 2 "$EPMOE" eval "${small[@]}" \
    --tokenizer "$cli_tmp/broken" --text "$cli_tmp/corpus.txt" --out "$cli_tmp/bad_eval"
printf '{not json' >"$cli_tmp/broken/tokenizer.json"
bad "tokenizer.json: not valid JSON" "$EPMOE" tokenize --model "$cli_tmp/broken" --text "$cli_tmp/code.txt" --out "$cli_tmp/x.bin"
bad "no tokenizer.json or tokenizer.model" "$EPMOE" tokenize --model "$cli_tmp" --text "$cli_tmp/code.txt" --out "$cli_tmp/x.bin"
bad "missing.txt: cannot read" "$EPMOE" tokenize --model "$fx/neox" --text "$cli_tmp/missing.txt" --out "$cli_tmp/x.bin"
bad "expected FILE.safetensors or FILE.bin" "$EPMOE" tokenize --model "$fx/neox" --text "$cli_tmp/code.txt" --out "$cli_tmp/x.txt"
bad "give --text FILE and --out FILE" "${mpiexec[@]}" -np 2 "$EPMOE" tokenize --model "$fx/neox"
bad "missing.txt: cannot read" "${mpiexec[@]}" -np 2 "$EPMOE" tokenize --model "$fx/neox" --text "$cli_tmp/missing.txt" \
    --out "$cli_tmp/x.bin"
bad "--progress-interval 0: expected > 0" "$EPMOE" tokenize --model "$fx/neox" --text "$cli_tmp/code.txt" \
    --out "$cli_tmp/x.bin" --progress-interval 0
bad "outside the model's vocabulary of 100" "${mpiexec[@]}" -np 2 "$EPMOE" eval "${small[@]}" --set model.vocab_size=100 \
    --tokenizer "$fx/neox" --text "$cli_tmp/corpus.txt" --out "$cli_tmp/bad_eval2"
bad "--text needs a tokenizer" "$EPMOE" eval "${small[@]}" --text "$cli_tmp/corpus.txt" --out "$cli_tmp/bad_eval3"
bad "give text.tokens or text.text, not both" "$EPMOE" eval "${small[@]}" --text "$cli_tmp/corpus.txt" \
    --tokens "$cli_tmp/sp.safetensors" --out "$cli_tmp/bad_eval4"
printf '{"text": "x"}\n' >"$cli_tmp/bad.jsonl"
bad 'bad.jsonl: line 1: expected a JSON object with a string "prompt"' "$EPMOE" generate "${small[@]}" \
    --tokenizer "$fx/neox" --text "$cli_tmp/bad.jsonl" --out "$cli_tmp/bad_gen"
finish
