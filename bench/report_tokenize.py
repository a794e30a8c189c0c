#!/usr/bin/python3
"""The tokenization section of bench/RESULTS.md: `epmoe tokenize` on one core against spm_encode (SentencePiece)
and, where it ran, Hugging Face tokenizers (bench/peer_tokenize.py) on a byte-level BPE. Run alone
(bench/run.sh --only tokenize) it writes the section by itself:

    report_tokenize.py FOLDER --markdown TOKENIZE.md --json tokenize.json [--quick 1]

FOLDER/tokenize holds run.sh's tokenize stage: text.txt, sp/tokenizer.model, bpe/tokenizer.json, bpe.json
(train_bpe.py's line), runs/<tool>-<r>.json (time_cmd: wall seconds, exit code) with their .log, spm_ids.txt,
sp.bin, bpe.bin, and peer.json (+ hf_ids.bin) when tokenizers was there. FOLDER/lscpu.txt names the CPU."""
import argparse
import glob
import json
import os
import re
import statistics
import struct

from report_util import cpu_name, fmt, fmt_stats, ratio, stats

TOOLS = (("spm", "spm_encode (line by line)", "SentencePiece BPE, tokenizer.model"),
         ("epmoe_sp", "epmoe tokenize", "SentencePiece BPE, tokenizer.model"),
         ("epmoe_bpe", "epmoe tokenize", "byte-level BPE, tokenizer.json"))


def read_ids(path):
    raw = open(path, "rb").read() if os.path.exists(path) else b""
    return list(struct.unpack(f"<{len(raw) // 2}H", raw))


def own_rates(t, tool):
    """MB/s that epmoe tokenize printed itself (read + encode, after loading, before writing)."""
    out = []
    for log in sorted(glob.glob(os.path.join(t, "runs", f"{tool}-*.json.log"))):
        m = re.search(r"\(([0-9.]+) MB/s", open(log).read())
        if m:
            out.append(float(m.group(1)))
    return stats(out) if out else None


def figures(folder):
    t = os.path.join(folder, "tokenize")
    mb = os.path.getsize(os.path.join(t, "text.txt")) / 1e6
    out = {"cpu": cpu_name(folder), "text_mb": mb, "tools": {}}
    for tool, _, _ in TOOLS:
        runs = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(t, "runs", f"{tool}-*.json")))]
        ok = [r["seconds"] for r in runs if r["rc"] == 0]
        out["tools"][tool] = {"runs": len(runs), "failed": len(runs) - len(ok),
                              "mb_per_s": stats([mb / s for s in ok]) if ok else None,
                              "own_mb_per_s": own_rates(t, tool) if tool.startswith("epmoe") else None}
    spm = [int(x) for x in open(os.path.join(t, "spm_ids.txt")).read().split()] \
        if os.path.exists(os.path.join(t, "spm_ids.txt")) else []
    sp, bpe = read_ids(os.path.join(t, "sp.bin")), read_ids(os.path.join(t, "bpe.bin"))
    out["check"] = {"sp_tokens": len(sp), "spm_tokens": len(spm), "sp_equal": bool(sp) and sp == spm,
                    "bpe_tokens": len(bpe)}
    peer = os.path.join(t, "peer.json")
    out["peer"] = json.load(open(peer)) if os.path.exists(peer) else None
    hf = os.path.join(t, "hf_ids.bin")
    if os.path.exists(hf):
        raw = open(hf, "rb").read()
        out["check"]["hf_equal"] = list(struct.unpack(f"<{len(raw) // 4}I", raw)) == bpe
    bpe_line = os.path.join(t, "bpe.json")
    out["bpe"] = json.load(open(bpe_line)) if os.path.exists(bpe_line) else None
    return out


def markdown(f, quick):
    tools, c = f["tools"], f["check"]
    spm = tools["spm"]["mb_per_s"]
    lines = ["## Tokenization (one core)", "",
             f"{f['cpu']}, core 0 (`taskset -c 0`), one thread. Text: Debian's fortunes corpus 4 times, "
             f"{f['text_mb']:.2f} MB. The tokenizers were trained for this bench on that corpus (no real "
             "checkpoint's tokenizer is on the machine): a SentencePiece BPE of 32000 pieces (`spm_train`, "
             f"byte_fallback) and a GPT-2-style byte-level BPE tokenizer.json of {f['bpe']['vocab'] if f['bpe'] else 'n/a'} "
             "ids (bench/train_bpe.py). Whole command: wall time of the process (load, read, encode, write) over "
             "the file's bytes; encode: epmoe's own figure (read and encode, after the load) and the peer's "
             "(encode only). Median (min-max) of "
             f"{tools['spm']['runs']} runs{' (--quick)' if quick else ''}.", "",
             "| tokenizer | tool | whole command MB/s | encode MB/s | vs spm_encode (whole command) | failed runs |",
             "|---|---|---|---|---|---|"]
    for tool, name, kind in TOOLS:
        x = tools[tool]
        vs = ratio(x["mb_per_s"]["median"], spm["median"]) if x["mb_per_s"] and spm and tool == "epmoe_sp" else None
        lines.append(f"| {kind} | {name} | {fmt_stats(x['mb_per_s'])} | {fmt_stats(x['own_mb_per_s'])} | "
                     f"{fmt(vs) + 'x' if vs else ''} | {x['failed']} |")
    p = f["peer"]
    if p:
        lines.append(f"| byte-level BPE, tokenizer.json | Hugging Face tokenizers {p['version']} | | "
                     f"{fmt_stats(p['mb_per_s'])} | | 0 |")
    lines += ["", f"Check: epmoe's SentencePiece ids {'equal' if c['sp_equal'] else '**differ from**'} "
              f"spm_encode's ({c['sp_tokens']:,} vs {c['spm_tokens']:,} tokens; spm_encode encodes each line, "
              "epmoe the whole text, cut at spaces where the ids provably do not change)."]
    if "hf_equal" in c:
        lines.append(f"epmoe's byte-level BPE ids {'equal' if c['hf_equal'] else '**differ from**'} tokenizers' "
                     f"({c['bpe_tokens']:,} tokens).")
    else:
        lines.append("Hugging Face tokenizers is not installed here: run `python3 bench/peer_tokenize.py DIR/bpe "
                     "DIR/text.txt --ids hf_ids.bin` where it is (DIR: `bench/run.sh --only tokenize --keep DIR`).")
    lines += device_lines()
    return "\n".join(lines) + "\n"


def device_lines():
    """The record of the device machine's run (bench/device/tokenize.json), where Hugging Face tokenizers is."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "device", "tokenize.json")
    if not os.path.exists(path):
        return []
    d = json.load(open(path))
    ep = sorted(d["epmoe_mb_per_s_runs"])
    ep_stats = {"median": statistics.median(ep), "min": ep[0], "max": ep[-1]}
    out = ["", f"On the {d['cores']}-core device machine ({d['cpu']}, {d['date']}, bench/device/run_tokenize.sh), the "
           f"same text and byte-level BPE, one core each, in one run: epmoe tokenize {fmt_stats(ep_stats)} MB/s "
           f"(whole command, {len(ep)} runs); Hugging Face tokenizers {d['versions']['tokenizers']}:"]
    for h in d["hf"]:
        out.append(f"- {h['mode']}: {fmt_stats(h['mb_per_s'])} MB/s (encode only), epmoe / tokenizers "
                   f"**{fmt(ratio(ep_stats['median'], h['mb_per_s']['median']))}x**")
    fresh = d["fresh_tokenizers"]
    c = d["ids_check"]
    out.append(f"- ids: epmoe's {'equal' if c['equal'] else '**differ from**'} those of the whole-text encode "
               f"({c['epmoe_tokens']:,} and {c['hf_tokens']:,} tokens; encode_batch of lines cuts tokens that span lines). "
               f"Tokenizers trained afresh by HF on another corpus (tests/fixtures/tokenizers/check_fresh.py, "
               f"neox, qwen2, llama, metaspace, sp) on texts no test uses: {fresh[-1]['summary']}.")
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--markdown", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--quick", type=int, default=0)
    a = parser.parse_args()
    f = figures(a.folder)
    json.dump(f, open(a.json, "w"), indent=1)
    open(a.markdown, "w").write(markdown(f, a.quick))


if __name__ == "__main__":
    main()
