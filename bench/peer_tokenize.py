#!/usr/bin/env python3
"""Hugging Face tokenizers' MB/s on one text, the peer of `epmoe tokenize` (bench/run.sh --only tokenize):

    peer_tokenize.py TOKENIZER_DIR TEXT [--runs N] [--ids OUT.bin]

Loads TOKENIZER_DIR/tokenizer.json with tokenizers.Tokenizer.from_file and encodes the whole file as one string
(the file read as bytes.decode("utf-8", "replace"), add_special_tokens=False), N times on one thread
(RAYON_NUM_THREADS=1: encode of one string is single-threaded anyway). Prints one JSON object: MB/s (file bytes
over the encode's wall time, the load and read not counted) as median, min, max over the runs, the tokens, and
the versions. --ids writes the ids as little-endian uint32 for a check against epmoe's."""
import argparse
import json
import os
import platform
import statistics
import struct
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("tokenizer_dir")
    parser.add_argument("text")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ids", default="")
    parser.add_argument("--lines", action="store_true",
                        help="encode_batch over the file's lines (newlines kept) instead of one string: how a corpus "
                             "is usually fed; the ids may differ from the whole text's where a token spans lines")
    a = parser.parse_args()
    import tokenizers

    tok = tokenizers.Tokenizer.from_file(os.path.join(a.tokenizer_dir, "tokenizer.json"))
    raw = open(a.text, "rb").read()
    text = raw.decode("utf-8", "replace")
    rates, ids = [], None
    for _ in range(a.runs):
        t0 = time.perf_counter()
        if a.lines:
            ids = [i for e in tok.encode_batch(text.splitlines(True), add_special_tokens=False) for i in e.ids]
        else:
            ids = tok.encode(text, add_special_tokens=False).ids
        rates.append(len(raw) / 1e6 / (time.perf_counter() - t0))
    if a.ids:
        with open(a.ids, "wb") as f:
            f.write(struct.pack(f"<{len(ids)}I", *ids))
    print(json.dumps({"tool": "tokenizers", "version": tokenizers.__version__, "python": platform.python_version(),
                      "mode": "encode_batch of lines" if a.lines else "encode of the whole text",
                      "mb": len(raw) / 1e6, "tokens": len(ids), "runs": a.runs,
                      "mb_per_s": {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}}))


if __name__ == "__main__":
    sys.exit(main())
