#!/usr/bin/env bash
# The device run of this session: HF tokenizers' MB/s and ids against epmoe tokenize's on the bench text, and
# tokenizers trained afresh by HF on another corpus (tests/fixtures/tokenizers/check_fresh.py). Run by the
# `run` tool from the repository root with build-dev/ carried: build-dev/bin/epmoe (a Debian 12 build),
# build-dev/libs.tar.xz (its libraries but libc/libstdc++/MPI: ldd), build-dev/tok/{bpe/,text.txt,bpe.bin} from
# `bench/run.sh --only tokenize --keep DIR`, build-dev/fresh/ (fortunes' computers as the corpus; science, wisdom
# and a crafted text as the texts). Its outputs, digested, are bench/device/tokenize.json.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
python3 -c 'import tokenizers, sentencepiece, transformers; print(tokenizers.__version__, sentencepiece.__version__, transformers.__version__)' >> $OUT/cpu.txt
$d/bin/epmoe tokenize --help > $OUT/help.txt 2>&1 || echo "epmoe does not start" >> $OUT/cpu.txt
for r in 1 2 3 4 5; do taskset -c 0 $d/bin/epmoe tokenize --tokenizer $d/tok/bpe/tokenizer.json --text $d/tok/text.txt --out /tmp/e$r.bin --no-special -q --overwrite >> $OUT/epmoe_tok.txt 2>&1; done
cmp /tmp/e1.bin $d/tok/bpe.bin && echo "device epmoe ids = local epmoe ids" >> $OUT/epmoe_tok.txt
taskset -c 0 python3 bench/peer_tokenize.py $d/tok/bpe $d/tok/text.txt --runs 5 --ids /tmp/hf.bin > $OUT/hf_tok.json 2>&1
taskset -c 0 python3 bench/peer_tokenize.py $d/tok/bpe $d/tok/text.txt --runs 5 --lines --ids /tmp/hf_lines.bin >> $OUT/hf_tok.json 2>&1
cmp /tmp/hf.bin /tmp/hf_lines.bin && echo '"lines: same ids"' >> $OUT/hf_tok.json
python3 - >> $OUT/hf_tok.json <<'PY'
import struct
a = open('/tmp/hf.bin','rb').read(); b = open('build-dev/tok/bpe.bin','rb').read()
x = struct.unpack(f'<{len(a)//4}I', a); y = struct.unpack(f'<{len(b)//2}H', b)
first = next((i for i,(p,q) in enumerate(zip(x,y)) if p!=q), None)
print({"hf_tokens": len(x), "epmoe_tokens": len(y), "equal": list(x)==list(y), "first_difference": first})
PY
python3 tests/fixtures/tokenizers/check_fresh.py --epmoe $d/bin/epmoe --corpus $d/fresh/corpus.txt --texts $d/fresh/science.txt $d/fresh/wisdom.txt $d/fresh/crafted.txt --out /tmp/fresh > $OUT/fresh.jsonl 2> $OUT/fresh.err
tail -3 $OUT/fresh.err
cat $OUT/*.txt $OUT/hf_tok.json; tail -4 $OUT/fresh.jsonl
