#!/usr/bin/python3
"""Turns the raw outputs of bench/run.sh (a folder) into bench/RESULTS.md and bench/results.json.

Every figure is a median over repetitions taken in the same run, with min/max beside it; every ratio
compares two figures of that run. A figure that was not measured (a backend this build lacks, a failed
run) is null in the JSON and "n/a" in the table, with the reason."""
import argparse
import glob
import json
import os
import statistics

from report_layer import changing_section, changing_targets, decode_section, fixed_section, load_peer, peer_search_section
from report_model import model_section, model_targets
from report_tokenize import figures as tokenize_figures, markdown as tokenize_markdown
from report_train import train_section, train_targets
from report_util import fmt, fmt_stats, load_kernels, med, metric, ratio, stats, verdict

D_MODEL, D_FF, EXPERTS, TOP_K = 1024, 3584, 8, 2
FLOPS_PER_TOKEN = 6.0 * D_MODEL * D_FF * TOP_K  # the experts' FLOPs of one token (gate excluded)


def load_runs(folder):
    """epmoe run results: {name: {summary, check, error}}."""
    runs = {}
    for log in sorted(glob.glob(os.path.join(folder, "runs", "*.log"))):
        name = os.path.basename(log)[:-4]
        entry = {"summary": None, "check": None, "error": None}
        summary = os.path.join(folder, "runs", name, "summary.json")
        if os.path.exists(summary):
            entry["summary"] = json.load(open(summary))
        else:
            lines = [l for l in open(log) if l.strip()]
            errors = [l for l in lines if "epmoe: error" in l]
            entry["error"] = (errors or lines or ["no output"])[0].strip()
        check = os.path.join(folder, "runs", name + ".check.json")
        if os.path.exists(check):
            entry["check"] = json.load(open(check))["rel_l2_vs_torch_fp64"]
        runs[name] = entry
    return runs


def run_figures(folder, name, entry):
    s = entry["summary"]
    if s is None:
        return None
    steps = [json.loads(l) for l in open(os.path.join(folder, "runs", name, "metrics.jsonl"))]
    steps = steps[1:] if len(steps) > 2 else steps  # step 0 warms caches and first-touches buffers
    tps = [l["tokens"] / l["step_time_s"] for l in steps]
    layer = [l["tokens"] / (l["step_time_s"] - l["time_breakdown_s"]["coordinator"]) for l in steps]
    breakdown = {k: sum(l["time_breakdown_s"][k] for l in steps) for k in steps[0]["time_breakdown_s"]}
    total = sum(breakdown.values())
    return {"ranks": s["ranks"], "tokens_per_step": steps[0]["tokens"], "steps_timed": len(steps),
            "step_tokens_per_s": stats(tps), "layer_tokens_per_s": stats(layer),
            "breakdown_share": {k: v / total for k, v in breakdown.items()} if total else None,
            "expert_gflops_per_rank": s.get("expert_gflops"), "kernel": (s.get("compute") or {}).get("kernel"),
            "weight_bytes_per_rank": s["memory"].get("weight_bytes_per_rank"),
            "peak_rss_bytes": s["memory"].get("peak_rss_bytes"),
            "rank_max_over_mean": stats([l["load"]["rank_max_over_mean"] for l in steps]),
            "implementation": (s.get("compute") or {}).get("implementation"),
            "rel_l2_vs_torch_fp64": entry["check"]}


def machine_line(folder, info):
    """CPU model and ISA (lscpu), cores (hwloc), MPI, BLAS and compute kernel (epmoe info)."""
    cpu, isa = {}, []
    path = os.path.join(folder, "lscpu.txt")
    if os.path.exists(path):
        for line in open(path):
            key, _, value = line.partition(":")
            cpu[key.strip()] = value.strip()
            if key == "isa":
                isa.append(value.strip())
    topo, blas, comp = info.get("topology", {}), info.get("blas", {}), info.get("compute", {})
    return (f"Machine: {cpu.get('Model name', '?')}, {topo.get('cores', '?')} cores "
            f"({', '.join(isa) or 'no AVX-512'}; {cpu.get('CPU max MHz', cpu.get('cpuinfo MHz', '?'))} MHz), "
            f"{info.get('mpi', {}).get('library', '?')}, {blas.get('config', '?')}, default kernel "
            f"{comp.get('kernel', '?')} ({comp.get('implementation', '')}; {comp.get('onednn', '')}).")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("folder")
    p.add_argument("--quick", type=int, default=0)
    p.add_argument("--seconds", type=int, default=None)
    p.add_argument("--markdown", required=True)
    p.add_argument("--json", required=True)
    a = p.parse_args()
    f = a.folder
    info = json.load(open(os.path.join(f, "info.json")))
    kernels = load_kernels(os.path.join(f, "kernels.json"))
    haswell = load_kernels(os.path.join(f, "kernels_haswell.json"))
    dispatch = [json.loads(l) for l in open(os.path.join(f, "dispatch.jsonl")) if l.strip()]
    peer = load_peer(f)
    runs = {n: run_figures(f, n, e) for n, e in load_runs(f).items()}
    run_errors = {n: e["error"] for n, e in load_runs(f).items() if e["error"]}

    out = {"quick": bool(a.quick), "seconds": a.seconds, "machine": info, "kernels": kernels,
           "kernels_haswell": haswell, "dispatch": dispatch,
           "peer": {"search": peer["search"], "points": {"/".join(map(str, k)): v for k, v in peer["points"].items()}}, "runs": runs, "run_errors": run_errors}
    L = []
    L.append("# epmoe benchmarks\n")
    L.append("Regenerated by `bench/run.sh` (" + (f"{a.seconds} s" if a.seconds else "") +
             (", **--quick: few repetitions, not for quoting**" if a.quick else "") + "). Shape: d_model "
             f"{D_MODEL}, d_ff {D_FF}, {EXPERTS} experts, top-{TOP_K}. Each figure is the median of its "
             "repetitions with (min-max); every ratio compares two figures of the same run. The machine is "
             "shared and noisy.\n")
    L.append(machine_line(f, info) + "\n")

    # Kernels.
    peak = metric(kernels, "Peak", "GFLOPS")
    L.append("## Expert GEMMs (one core, GFLOP/s)\n")
    L.append(f"Measured FP32 FMA peak of one core: **{fmt_stats(peak)} GFLOP/s** "
             f"({kernels.get('Peak', {}).get('label', '')}).\n")
    amx_peak = {ab: metric(kernels, f"AmxPeak/{ab}", "GFLOPS") for ab in ("0/0", "16/16", "1024/16", "1024/1024")}
    if med(amx_peak["0/0"]) is not None:
        L.append(f"Measured AMX BF16 peak of one core: **{fmt_stats(amx_peak['0/0'])} GFLOP/s**: epmoe's micro-kernel "
                 "(2x2 tiles, four TDPBF16PS a step) with its operands held in tiles. The same loop loading its four "
                 f"tiles every step: {fmt_stats(amx_peak['16/16'])} GFLOP/s with A and B from 16 KiB (L1); "
                 f"{fmt_stats(amx_peak['1024/16'])} with A from 1 MiB (L2) and B from 16 KiB (L1), where the amx/bf16 "
                 f"kernel's blocking keeps them; {fmt_stats(amx_peak['1024/1024'])} with both from 1 MiB.\n")
    else:
        err = kernels.get("AmxPeak/0/0", {}).get("error")
        L.append(f"AMX BF16 peak: not measured ({err or 'not run'}).\n")
    backends = [n.split("/", 1)[1] for n in kernels if n.startswith("Kernel/") and n.endswith("/1024")]
    head = "| rows M | bare sgemm | bare sgemm, 3 GEMMs (W1, W3 apart) | bare sgemm, CORETYPE=Haswell |"
    for b in backends:
        head += f" epmoe {b.rsplit('/', 1)[0]} | ratio to bare |"
        if b.startswith("amx/") and med(amx_peak["0/0"]) is not None:
            head += " of AMX peak |"
    L.append(head)
    L.append("|" + "---|" * (head.count("|") - 1))
    gemm_rows, amx_rows = {}, {}
    for m in (32, 64, 256, 1024):
        bare = metric(kernels, f"SgemmBare/{m}", "GFLOPS")
        row = f"| {m} | {fmt_stats(bare)} | {fmt_stats(metric(kernels, f'SgemmUnfused/{m}', 'GFLOPS'))} | " \
              f"{fmt_stats(metric(haswell, f'SgemmBare/{m}', 'GFLOPS'))} |"
        for b in backends:
            name = f"Kernel/{b.rsplit('/', 1)[0]}/{m}"
            k = metric(kernels, name, "GFLOPS")
            err = kernels.get(name, {}).get("error")
            row += f" {fmt_stats(k) if not err else 'n/a: ' + err[:60]} | {fmt(ratio(med(k), med(bare)))} |"
            if b.startswith("amx/") and med(amx_peak["0/0"]) is not None:
                row += f" {fmt(ratio(med(k), med(amx_peak['0/0'])))} |"
                amx_rows[m] = ratio(med(k), med(amx_peak["0/0"]))
            if "/fp32/" in b:  # the targets compare FP32 kernels with FP32 sgemm
                gemm_rows[(b, m)] = ratio(med(k), med(bare))
        L.append(row)
    L.append("")
    wrong = {n: e["stats"]["wrong"]["max"] for n, e in kernels.items() if "wrong" in e["stats"]}
    bad = [n for n, v in wrong.items() if v]
    L.append(f"Self-checks: {len(wrong)} benchmarks compare their output with a float64 loop or an identity; "
             + (f"**wrong: {', '.join(bad)}**" if bad else "all agree (`wrong` = 0)") + ".\n")

    # Pack / combine.
    L.append("## Pack and combine (one core, GiB/s; bytes a token = (2 + 2k) d_model 4)\n")
    L.append("`pack` is the row layout and a memcpy of each row into the send buffer: what epmoe does where ranks "
             "yield, and what MPI's datatype engine does inside the token exchange where they block.\n")
    L.append("| tokens | memcpy | pack | combine | pack + combine | pack + combine / memcpy |")
    L.append("|---|---|---|---|---|---|")
    gib = 1.0 / (1 << 30)
    for t in (64, 2048):
        mc = metric(kernels, f"Memcpy/{t}", "bytes_per_second")
        pc = metric(kernels, f"PackCombine/{t}", "bytes_per_second")
        L.append(f"| {t} | {fmt_stats(mc, gib)} | {fmt_stats(metric(kernels, f'Pack/{t}', 'bytes_per_second'), gib)} | "
                 f"{fmt_stats(metric(kernels, f'Combine/{t}', 'bytes_per_second'), gib)} | {fmt_stats(pc, gib)} | "
                 f"{fmt(ratio(med(pc), med(mc)))} |")
    L.append("")
    L.append("## Gate + top-k (one core)\n")
    for t in (64, 2048):
        L.append(f"- {t} tokens: {fmt_stats(metric(kernels, f'GateTopk/{t}', 'items_per_second'))} tokens/s")
    L.append("")

    # Dispatch.
    L.append("## Dispatch + combine against bare MPI_Alltoallv (2 ranks, seconds per layer, max over ranks)\n")
    L.append("epmoe's dispatch + combine is the layer's critical path minus the slowest rank's expert phase, with "
             "identity experts (bench_dispatch.cpp). `wait` is `resources.mpi_wait`: `block` is what `auto` runs "
             "with one rank a core, `yield` what it runs oversubscribed. Where ranks block, epmoe's token exchange is "
             "an `MPI_Alltoallw` that gathers the rows from the layer's input through a derived datatype (no pack); "
             "yielding ranks pack the rows first and use `MPI_Alltoallv`. The bare collectives copy a rank's rows to "
             "itself too; epmoe keeps those out of MPI. The floor is each repetition's sum of what epmoe cannot "
             "avoid, each part measured in this run: the same two collectives without the rows a rank sends itself "
             "(`remote`), one `MPI_Alltoall` of the row counts (`counts`; a bare alltoallv is given them), and the "
             "layer's own work on the rows, timed inside it (`rows`: the row layout, the pack where it packs, and "
             "the weighted sum). What is above the floor is waiting between the ranks' phases.\n")
    L.append("| tokens/rank | routing | wait | reps | bytes (max rank, both ways) | bare 2x MPI_Alltoallv | remote | counts "
             "| rows | epmoe dispatch + combine | ratio | floor / bare | whole layer (identity experts) | wrong |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for d in dispatch:
        L.append(f"| {d['tokens_per_rank']} | {d['routing']} | {d.get('wait', '')} | {d.get('reps', '')} | "
                 f"{d['max_rank_bytes'] / 2**20:.1f} MiB | "
                 f"{fmt_stats(d['bare_alltoallv_s'], 1e6)} us | {fmt_stats(d.get('bare_remote_alltoallv_s'), 1e6)} us | "
                 f"{fmt_stats(d.get('count_alltoall_s'), 1e6)} us | {fmt_stats(d.get('copies_s'), 1e6)} us | "
                 f"{fmt_stats(d['ours_s'], 1e6)} us | **{d['ours_over_bare']:.2f}x** | {fmt(d.get('floor_over_bare'))}x | "
                 f"{fmt_stats(d['layer_s'], 1e6)} us | {d['wrong']} |")
    L.append("")

    # The peer, and the layer against it.
    peer_search_section(L, peer)
    default = info.get("compute", {}).get("kernel", "openblas/fp32").replace("/", "-")  # what auto resolves to
    ceilings = {}
    for t, m in ((2048, 1024), (64, 32)):
        bare = med(metric(kernels, f"SgemmBare/{m}", "GFLOPS"))
        ceilings[t] = None if bare is None else 2 * bare * 1e9 / FLOPS_PER_TOKEN
    headline = fixed_section(L, runs, run_errors, peer, ceilings, default)
    changing = changing_section(L, f, runs, run_errors, peer)
    decode = decode_section(L, f, runs, D_MODEL, D_FF, EXPERTS)
    out["changing"] = {"/".join(map(str, k)): {"ratio": v["ratio"], "p50": v["p50"], "p99": v["p99"]}
                       for k, v in changing.items()}

    # The overlap lever.
    L.append("## Overlap: one chunk's MPI_Ialltoallv behind another chunk's experts (`compute.overlap_chunks`)\n")
    L.append("The default kernel on 2 ranks; chunks 1 is the layer run above. Dispatch and combine include the waits "
             "for tokens and results; the experts run smaller GEMMs (rows / chunks each).\n")
    L.append("| tokens/rank | chunks | layer tokens/s | vs 1 chunk | dispatch + combine share | rel. L2 vs torch fp64 |")
    L.append("|---|---|---|---|---|---|")
    for t in (2048, 64):
        base = runs.get(f"t{t}-{default}")
        for chunks in (1, 2, 4):
            name = f"t{t}-{default}" if chunks == 1 else f"overlap{chunks}-t{t}"
            r = runs.get(name)
            if r is None:
                L.append(f"| {t} | {chunks} | n/a: {run_errors.get(name, 'not run')[:80]} ||||")
                continue
            share = r["breakdown_share"]
            comm = share["dispatch"] + share["combine"] if share else None
            vs = ratio(med(r["layer_tokens_per_s"]), med(base["layer_tokens_per_s"]) if base else None)
            L.append(f"| {t} | {chunks} | {fmt_stats(r['layer_tokens_per_s'])} | {fmt(vs)} | "
                     f"{fmt(100 * comm if comm is not None else None)} % | {fmt(r['rel_l2_vs_torch_fp64'])} |")
    L.append("")

    # Scaling and memory.
    L.append("## Weak scaling and weight memory (2048 tokens per rank, default kernel)\n")
    L.append("| ranks | step tokens/s | tokens/s per rank | efficiency vs 1 rank | weight MiB per rank | peak RSS MiB (max rank) |")
    L.append("|---|---|---|---|---|---|")
    base = None
    for p_, name in ((1, "weak-p1"), (2, f"t2048-{default}"), (4, "weak-p4")):
        r = runs.get(name)
        if r is None:
            L.append(f"| {p_} | n/a: {run_errors.get(name, 'not run')[:80]} |||||")
            continue
        tps = med(r["step_tokens_per_s"])
        base = base or tps
        rss = r["peak_rss_bytes"]
        rss_max = max(rss) if isinstance(rss, list) else rss
        wb = r["weight_bytes_per_rank"]
        wb_max = max(wb) if isinstance(wb, list) else wb
        L.append(f"| {p_}{' (oversubscribed: 4 ranks on 2 cores, overhead check only)' if p_ == 4 else ''} | "
                 f"{fmt_stats(r['step_tokens_per_s'])} | {fmt(tps / p_)} | {fmt(tps / (base * p_))} | "
                 f"{fmt(wb_max / 2**20 if wb_max else None)} | {fmt(rss_max / 2**20 if rss_max else None)} |")
    L.append("")

    model = model_section(L, f)
    out["model"] = model
    train = train_section(L, f)
    out["train"] = train
    if os.path.isdir(os.path.join(f, "tokenize")):
        tok = tokenize_figures(f)
        L.append(tokenize_markdown(tok, a.quick))
        out["tokenize"] = tok

    # Targets.
    L.append("## Targets\n")
    L.append("Each target with its verdict and, where it is not met, the limit in the way and the measurement of "
             "this run that shows it.\n")
    L.append("| target | measured | verdict | limit in the way (measured here) |")
    L.append("|---|---|---|---|")
    best_gemm = {m: max([v for (b, mm), v in gemm_rows.items() if mm == m and v is not None] or [None],
                        key=lambda v: -1 if v is None else v) for m in (32, 64, 256, 1024)}
    for m in (64, 1024):
        L.append(f"| expert GEMMs >= 0.9x bare sgemm (M={m}, best FP32 backend) | {fmt(best_gemm[m])} | "
                 f"{verdict(best_gemm[m], 0.9)} | |")
    for d in dispatch:
        if d.get("wait", "block") != "block":
            continue
        first, pair = med(d.get("bare_remote_first_s")), med(d.get("bare_remote_alltoallv_s"))
        why = (f"the remote rows' collectives, the count exchange and the layer's own work on the rows "
               f"({fmt(med(d.get('copies_s')) and med(d['copies_s']) * 1e6)} us), each measured in this run: floor "
               f"{fmt(d.get('floor_over_bare'))}x; the rest is waiting between the ranks' phases. The bare pair "
               f"gains from running back to back: its first collective alone took {fmt(first and first * 1e6)} us of "
               f"the pair's {fmt(pair and pair * 1e6)} us, the second running in lock-step behind it, while the "
               f"layer's return follows the experts")
        L.append(f"| dispatch + combine <= 1.2x bare alltoallv ({d['tokens_per_rank']} tokens, {d['routing']}, "
                 f"wait block) | {d['ours_over_bare']:.2f}x | {verdict(d['ours_over_bare'], 1.2, False)} | "
                 f"{why if d['ours_over_bare'] > 1.2 else ''} |")
    fp = runs.get(f"t2048-{default}")
    h = headline.get("t2048-default", {})
    rc = ratio(h.get("layer"), h.get("ceiling"))
    why = ""
    if fp and rc is not None and rc < 0.9:
        rmm = med(fp["rank_max_over_mean"])
        share = (fp["breakdown_share"] or {}).get("expert")
        bare = med(metric(kernels, "SgemmBare/1024", "GFLOPS"))
        why = (f"with both cores busy each rank's expert GEMMs ran at {fmt(fp['expert_gflops_per_rank'])} GFLOP/s, "
               f"against {fmt(bare)} for bare sgemm alone on one core ({fmt(ratio(fp['expert_gflops_per_rank'], bare))}: "
               f"shared L3, memory and clock); rows were balanced (busiest rank {fmt(rmm)}x the mean) and the GEMMs "
               f"were {fmt(100 * share if share else None)} % of the layer")
    L.append(f"| layer at 2048 tokens >= 0.9x sgemm ceiling | {fmt(rc)} | {verdict(rc, 0.9)} | {why} |")
    rp = ratio(h.get("layer"), h.get("peer"))
    why = ("both sides are GEMM-bound on the same cores; epmoe can only win on what HF does around the GEMMs "
           "(gather, index_add_, thread scaling)") if rp is not None and rp < 1.15 else ""
    L.append(f"| FP32 layer at 2048 tokens >= 1.15x the FP32 PyTorch peer (fixed tokens) | {fmt(rp)} | "
             f"{verdict(rp, 1.15)} | {why} |")
    h64 = headline.get("t64-default", {})
    r64 = ratio(h64.get("layer"), h64.get("peer"))
    why = ""
    if r64 is not None and r64 < 2.0 and h64.get("ceiling") and 2 * h64["peer"] > h64["ceiling"]:
        why = (f"2x the peer is {fmt(2 * h64['peer'])} tokens/s, above the bare-sgemm ceiling of 2 cores at the "
               f"32 rows an expert gets ({fmt(h64['ceiling'])} tokens/s): the experts' FLOPs alone cap the layer below it")
    elif r64 is not None and r64 < 2.0:
        weights = EXPERTS * 3 * D_MODEL * D_FF * 4  # bytes of expert weights one step streams, FP32
        mc = med(metric(kernels, "Memcpy/2048", "bytes_per_second"))
        why = (f"at 64 tokens a step streams all {weights / 1e6:.0f} MB of expert weights once, on either side: "
               f"epmoe at {fmt(weights * h64['layer'] / 128 / 1e9)} GB/s over 2 ranks, the peer at "
               f"{fmt(weights * h64['peer'] / 128 / 1e9)} GB/s; memcpy traffic on one core {fmt(mc and mc / 1e9)} GB/s")
    L.append(f"| FP32 layer at 64 tokens >= 2x the FP32 PyTorch peer (fixed tokens) | {fmt(r64)} | {verdict(r64, 2.0)} "
             f"| {why} |")
    blocked = ratio(med(amx_peak["1024/16"]), med(amx_peak["0/0"]))  # the L2-fed micro-kernel's share of the peak
    for m in (256, 1024):
        r, why = amx_rows.get(m), ""
        if r is not None and r < 0.6 and blocked is not None:
            why = (f"A streams from L2: the micro-kernel alone, loading A from 1 MiB and B from 16 KiB as the kernel's "
                   f"blocking does, reached {fmt(blocked)} of the peak in this run (both from L1: "
                   f"{fmt(ratio(med(amx_peak['16/16']), med(amx_peak['0/0'])))}); the kernel adds the accumulators' "
                   "store and reload between K chunks, the SwiGLU epilogue and the weights' first read from L3 or memory")
        L.append(f"| expert GEMMs >= 60 % of the measured AMX peak (M={m}, amx/bf16) | {fmt(r)} | {verdict(r, 0.6)} | "
                 f"{why} |")
    for kernel in ("amx-bf16", "onednn-bf16"):
        hb = headline.get(f"t2048-{kernel}")
        if hb is None:
            continue
        rb, why = ratio(hb.get("layer"), hb.get("peer")), ""
        other = med(metric(kernels, "Kernel/amx/bf16/1024", "GFLOPS"))
        if kernel == "onednn-bf16" and rb is not None and rb < 1.5 and other is not None:
            why = (f"oneDNN 2.6's BF16 matmul: {fmt(med(metric(kernels, 'Kernel/onednn/bf16/1024', 'GFLOPS')))} "
                   f"GFLOP/s at M=1024 against amx/bf16's {fmt(other)}; compute.backend=auto runs amx/bf16 where the "
                   "CPU has AMX")
        L.append(f"| BF16 layer at 2048 tokens >= 1.5x the BF16 PyTorch peer (fixed tokens, {kernel.replace('-', '/')}) "
                 f"| {fmt(rb)} | {verdict(rb, 1.5)} | {why} |")
    changing_targets(L, changing)
    for (dtype, tokens), d in sorted(decode.items()):
        r, why = d["ratio"], ""
        if r is not None and r < 0.6 and d["experts_ms"] is not None:
            rest = d["step_ms"] - d["experts_ms"]
            why = (f"the busiest rank's experts alone reached {fmt(d['experts_ratio'])} of the bound "
                   f"({fmt(d['experts_ms'])} of the step's {fmt(d['step_ms'])} ms; the gate, the exchange and the "
                   f"waits {fmt(rest)} ms): " +
                   ("the expert GEMMs at a few rows read their weights slower than the copy streams memory"
                    if rest < 0.2 * d["step_ms"] else "the rest of the step, beside the experts"))
        L.append(f"| decode step >= 0.6 of the memory-bandwidth bound ({tokens} tokens/rank, {dtype}) | {fmt(r)} | "
                 f"{verdict(r, 0.6)} | {why} |")
    bf = runs.get("t2048-amx-bf16") or runs.get("t2048-onednn-bf16")  # the kernel auto runs for bf16 first
    bf_ratio = ratio(med(bf["layer_tokens_per_s"]) if bf else None, med(fp["layer_tokens_per_s"]) if fp else None)
    why = ""
    if bf_ratio is not None and bf_ratio < 1.6 and "widened" not in (bf.get("implementation") or ""):
        why = (f"oneDNN's BF16 matmul runs here ({bf.get('implementation')}, {info.get('compute', {}).get('onednn')}): "
               f"the experts ran at {fmt(bf['expert_gflops_per_rank'])} GFLOP/s a rank against "
               f"{fmt(fp['expert_gflops_per_rank'] if fp else None)} in FP32")
    elif bf_ratio is not None and bf_ratio < 1.6:
        why = (f"this CPU has {info.get('compute', {}).get('onednn', '?')}: no AVX512-BF16, so oneDNN 2.6 has no BF16 "
               f"matmul and epmoe widens BF16 weights to FP32 per call ({bf.get('implementation')}); BF16 halves "
               "the weight bytes here, not the time")
    L.append(f"| BF16 >= 1.6x FP32 tokens/s at 2048 tokens | {fmt(bf_ratio)} | {verdict(bf_ratio, 1.6)} | {why} |")
    dev = bf["rel_l2_vs_torch_fp64"] if bf else None
    L.append(f"| BF16 deviation <= 1e-2 relative (vs torch float64) | {fmt(dev)} | {verdict(dev, 1e-2, False)} | |")
    model_targets(L, model)
    train_targets(L, train)
    L.append("")
    if run_errors:
        L.append("Runs that failed: " + "; ".join(f"`{n}`: {e}" for n, e in run_errors.items()) + "\n")
    open(a.markdown, "w").write("\n".join(L) + "\n")
    json.dump(out, open(a.json, "w"), indent=1, default=str)


if __name__ == "__main__":
    main()
