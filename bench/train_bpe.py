#!/usr/bin/python3
"""Trains a GPT-2-style byte-level BPE tokenizer.json (ByteLevel pre-tokenizer with GPT-2's regex, BPE over its
byte characters, ByteLevel decoder) on a text, without Hugging Face tokenizers: the bench's stand-in for a
checkpoint's byte-level tokenizer (OLMoE's GPT-NeoX, Qwen2's) when none is on the machine. The word split for
training follows GPT-2's regex through Python's re (\\p{L} as [^\\W\\d_]), which only shapes which merges are
learnt; the file says ByteLevel with use_regex, so every reader splits with the real regex.

    train_bpe.py TEXT OUT_DIR --vocab 32000

Writes OUT_DIR/tokenizer.json and prints {"vocab": N, "merges": M, "seconds": S}."""
import argparse
import collections
import heapq
import json
import os
import re
import time

WORD = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+""")


def byte_chars():
    """GPT-2's byte -> printable character map."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def train(text, vocab_size):
    chars = byte_chars()
    counts = collections.Counter(WORD.findall(text))
    words = [[chars[b] for b in w.encode("utf-8")] for w in counts]
    freq = list(counts.values())
    pairs, where = collections.Counter(), collections.defaultdict(set)
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pairs[(a, b)] += freq[i]
            where[(a, b)].add(i)
    heap = [(-c, p) for p, c in pairs.items()]
    heapq.heapify(heap)
    vocab = {chars[b]: i for i, b in enumerate(sorted(chars, key=lambda b: chars[b]))}
    merges = []
    while len(vocab) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)  # the most frequent pair; ties: the smallest
        if pairs.get(pair, 0) != -neg:
            continue  # stale: its count changed, and the new count was pushed then
        if -neg < 2:
            break
        merged = pair[0] + pair[1]
        merges.append(f"{pair[0]} {pair[1]}")
        vocab.setdefault(merged, len(vocab))
        changed = collections.Counter()
        for i in list(where[pair]):
            w, f = words[i], freq[i]
            for a, b in zip(w, w[1:]):
                changed[(a, b)] -= f
            out, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == pair[0] and w[j + 1] == pair[1]:
                    out.append(merged)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
            for a, b in zip(out, out[1:]):
                changed[(a, b)] += f
                where[(a, b)].add(i)
        for p, d in changed.items():
            if d:
                pairs[p] += d
                if pairs[p] > 0:
                    heapq.heappush(heap, (-pairs[p], p))
        pairs.pop(pair, None)
        where.pop(pair, None)
    return vocab, merges


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("text")
    parser.add_argument("out")
    parser.add_argument("--vocab", type=int, default=32000)
    a = parser.parse_args()
    t0 = time.time()
    vocab, merges = train(open(a.text, encoding="utf-8", errors="replace").read(), a.vocab)
    eot = len(vocab)
    level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    j = {"version": "1.0", "truncation": None, "padding": None,
         "added_tokens": [{"id": eot, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                           "rstrip": False, "normalized": False, "special": True}],
         "normalizer": None, "pre_tokenizer": level, "post_processor": dict(level, trim_offsets=False),
         "decoder": level,
         "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                   "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                   "vocab": vocab, "merges": merges}}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False)
    print(json.dumps({"vocab": eot + 1, "merges": len(merges), "seconds": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()
