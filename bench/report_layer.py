"""The layer sections of bench/RESULTS.md: the PyTorch peer's thread search, epmoe against it on fixed tokens
and on workloads whose routing changes every step, and the targets these figures decide. Used by report.py.

The peer: bench/peer_torch.py's files in the run folder, peer_search_<dtype>.json (every thread setting) and
peer_<dtype>_<tokens>.json (the best setting, timed on every workload)."""
import json
import math
import os
import statistics

from report_util import fmt, fmt_stats, med, ratio, stats, verdict

WORKLOADS = ("fixed", "uniform", "skewed", "drift")
KERNELS = ("openblas-fp32", "onednn-fp32", "onednn-bf16", "amx-bf16")


def percentile(values, q):
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    values = sorted(values)
    return values[max(0, math.ceil(q / 100 * len(values)) - 1)]


def setting_text(s):
    return (f"OPENBLAS_NUM_THREADS={s['openblas_num_threads']}, {s['torch_threads']} torch threads, "
            f"OMP_WAIT_POLICY={s['omp_wait_policy'] or 'unset'}")


def load_peer(folder):
    """{"search": {dtype: search json}, "points": {(dtype, workload, tokens): point + settings}}."""
    out = {"search": {}, "points": {}}
    for dtype in ("fp32", "bf16"):
        path = os.path.join(folder, f"peer_search_{dtype}.json")
        if os.path.exists(path):
            out["search"][dtype] = json.load(open(path))
        for tokens in (4096, 128):
            path = os.path.join(folder, f"peer_{dtype}_{tokens}.json")
            if not os.path.exists(path):
                continue
            res = json.load(open(path))
            setting = {"openblas_num_threads": res["openblas_num_threads"], "torch_threads": res["torch_threads"],
                       "omp_wait_policy": res["omp_wait_policy"]}
            for p in res["points"]:
                steps = p["step_s"]
                out["points"][(dtype, p["workload"], p["tokens"])] = {
                    "tokens_per_s": p["tokens_per_s"], "step_p50_s": percentile(steps, 50),
                    "step_p99_s": percentile(steps, 99), "steps": len(steps), "setting": setting,
                    "torch": res["torch"]}
    return out


def peer_search_section(L, peer):
    L.append("## The PyTorch peer: every thread setting it has\n")
    L.append("Debian's torch 1.13 (`BLAS_INFO=generic`) does its FP32 matmuls in the system OpenBLAS, whose threads "
             "`OPENBLAS_NUM_THREADS` sets, and its other ops (and BF16 matmuls, through oneDNN) on its own OpenMP "
             "threads (`torch.set_num_threads`; its default here is 1). Each setting runs in a fresh process on the "
             "uniform workload (a fresh batch every step) after one warm-up step; the best of each row count is the "
             "peer in every table below, re-timed there on every workload.\n")
    L.append("| dtype | tokens | OPENBLAS_NUM_THREADS | torch threads | OMP_WAIT_POLICY | tokens/s | |")
    L.append("|---|---|---|---|---|---|---|")
    for dtype, res in peer["search"].items():
        for tokens in sorted({int(t) for t in res["best"]}, reverse=True):
            best = res["best"][str(tokens)]
            for s in res["settings"]:
                pt = s["points"].get(str(tokens))
                mark = "**best**" if all(s[k] == best[k] for k in best) else ""
                L.append(f"| {dtype} | {tokens} | {s['openblas_num_threads']} | {s['torch_threads']} | "
                         f"{s['omp_wait_policy'] or 'unset'} | {fmt_stats(pt)} | {mark} |")
    L.append("")


def step_percentiles(folder, name):
    """p50 and p99 of the timed steps' wall times (step 0 excluded), seconds, and of the busiest rank's rows
    over the mean rows (the imbalance the slowest rank adds to a step)."""
    lines = [json.loads(l) for l in open(os.path.join(folder, "runs", name, "metrics.jsonl"))]
    lines = lines[1:] if len(lines) > 2 else lines
    times = [l["step_time_s"] for l in lines]
    imbalance = [l["load"]["rank_max_over_mean"] for l in lines]
    return percentile(times, 50), percentile(times, 99), percentile(imbalance, 50), percentile(imbalance, 99)


def fixed_section(L, runs, run_errors, peer, kernels_ceiling, default):
    """epmoe on the peer's fixed tokens, every kernel, against the peer of the same dtype."""
    L.append("## The layer on fixed tokens: epmoe on 2 ranks against the sgemm ceiling and the PyTorch peer\n")
    L.append("epmoe runs `epmoe run --model <the peer's Mixtral checkpoint> --input <its tokens>` on 2 ranks (1 thread "
             "each), the same tokens every step; the peer runs Hugging Face's MixtralSparseMoeBlock on the same "
             "weights and tokens in one process, in the dtype of the kernel (FP32 kernels against the FP32 peer, BF16 "
             "against the BF16 peer), at its best thread setting. Layer tokens/s excludes the coordinator and "
             "includes epmoe's RMSNorm and gate (the peer's time is the block alone); the ceiling is 2 cores x bare "
             "sgemm GFLOP/s at the rows an expert gets (2048 tokens/rank: M = 1024; 64: M = 32) / expert FLOPs a "
             "token. Step 0 is not timed.\n")
    L.append("| tokens/rank | kernel | layer tokens/s | sgemm ceiling | layer / ceiling | peer tokens/s | peer setting "
             "| layer / peer | rel. L2 vs torch fp64 | breakdown (gate/dispatch/expert/combine/coord.) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    headline = {}
    for t, total in ((2048, 4096), (64, 128)):
        for kernel in KERNELS:
            name = f"t{t}-{kernel}"
            r = runs.get(name)
            if r is None:
                L.append(f"| {t} | {kernel} | n/a: {run_errors.get(name, 'not run')[:80]} ||||||||")
                continue
            dtype = kernel.rsplit("-", 1)[1]
            pp = peer["points"].get((dtype, "fixed", total))
            lt = r["layer_tokens_per_s"]
            ceiling = kernels_ceiling.get(t)
            br = r["breakdown_share"] or {}
            label = (r["kernel"] or kernel) + (" (default)" if kernel == default else "")
            L.append(f"| {t} | {label} | {fmt_stats(lt)} | {fmt(ceiling)} | {fmt(ratio(med(lt), ceiling))} | "
                     f"{fmt_stats(pp['tokens_per_s']) if pp else 'n/a'} | {setting_text(pp['setting']) if pp else ''} | "
                     f"**{fmt(ratio(med(lt), med(pp['tokens_per_s']) if pp else None))}** | "
                     f"{fmt(r['rel_l2_vs_torch_fp64'])} | "
                     + "/".join(f"{100 * br.get(k, 0):.0f}%" for k in ("gate", "dispatch", "expert", "combine",
                                                                         "coordinator")) + " |")
            entry = {"layer": med(lt), "ceiling": ceiling, "peer": med(pp["tokens_per_s"]) if pp else None}
            headline[name] = entry
            if kernel == default:
                headline[f"t{t}-default"] = entry
    L.append("")
    return headline


def changing_section(L, folder, runs, run_errors, peer):
    """epmoe and the peer on the same batches, a fresh one every step; epmoe's own synthetic workload beside."""
    L.append("## Routing that changes every step\n")
    L.append("Each step is a fresh batch, so every expert's row count changes every step: `uniform` (N(0, 1) tokens), "
             "`skewed` (32 cluster centres with Zipf(1.2) popularity plus N(0, 0.5) noise, the family of epmoe's "
             "synthetic workload) and `drift` (skewed, the popularity moved by one cluster a step), written once by "
             "peer_torch.py; epmoe reads the same `[S, T, d_model]` file with `--input` (step s runs batch s), "
             "the peer times the same batches. `synthetic` is epmoe's own generator (`--tokens-per-rank 2048`, no "
             "`--input`) on the same checkpoint: different draws of the skewed family, shown beside, not divided by "
             "a peer. epmoe: 2 ranks, 1 thread each, `compute.backend=auto`; step 0 and the peer's warm-up batch are "
             "not timed. p50/p99 are nearest-rank over the timed steps' wall times.\n")
    L.append("| workload | tokens/rank | dtype | steps | epmoe layer tokens/s | step p50 / p99 (ms) | p99 / p50 | rank "
             "max/mean p50 / p99 | breakdown (gate/dispatch/expert/combine) | peer tokens/s | peer step p50 / p99 (ms) | "
             "epmoe / peer |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = {}
    for t, total in ((2048, 4096), (64, 128)):
        for dtype in ("fp32", "bf16"):
            for workload in ("uniform", "skewed", "drift", "synthetic"):
                name = f"seq-{workload}-t{t}-{dtype}"
                if name not in runs and name not in run_errors:
                    continue
                r = runs.get(name)
                if r is None:
                    L.append(f"| {workload} | {t} | {dtype} | n/a: {run_errors[name][:80]} |||||||||")
                    continue
                p50, p99, imb50, imb99 = step_percentiles(folder, name)
                pp = None if workload == "synthetic" else peer["points"].get((dtype, workload, total))
                br = r["breakdown_share"] or {}
                vs = ratio(med(r["layer_tokens_per_s"]), med(pp["tokens_per_s"]) if pp else None)
                rows[(workload, t, dtype)] = {"ratio": vs, "p50": p50, "p99": p99, "run": r, "peer": pp,
                                              "imbalance_p50": imb50, "imbalance_p99": imb99}
                peer_steps = f"{fmt(pp['step_p50_s'] * 1e3)} / {fmt(pp['step_p99_s'] * 1e3)}" if pp else "n/a"
                L.append(f"| {workload} | {t} | {dtype} | {r['steps_timed']} | {fmt_stats(r['layer_tokens_per_s'])} | "
                         f"{fmt(p50 * 1e3)} / {fmt(p99 * 1e3)} | {fmt(p99 / p50)} | "
                         f"{fmt(imb50)} / {fmt(imb99)} | "
                         + "/".join(f"{100 * br.get(k, 0):.0f}%" for k in ("gate", "dispatch", "expert", "combine"))
                         + f" | {fmt_stats(pp['tokens_per_s']) if pp else 'n/a'} | {peer_steps} | **{fmt(vs)}** |")
    L.append("")
    settings = {(d, t): pp["setting"] for (d, w, t), pp in peer["points"].items()}
    for (dtype, t), s in sorted(settings.items()):
        L.append(f"- peer {dtype} at {t} tokens: {setting_text(s)}")
    L.append("")
    return rows


def changing_targets(L, rows):
    """Issue 17's targets on the changing workloads: FP32 >= 1.0x, BF16 >= 1.5x the peer; p99 close to p50."""
    for (workload, t, dtype), row in sorted(rows.items()):
        if row["peer"] is None or t != 2048:
            continue
        target = 1.0 if dtype == "fp32" else 1.5
        why = ""
        if row["ratio"] is not None and row["ratio"] < target:
            r = row["run"]
            br = r["breakdown_share"] or {}
            why = (f"experts {100 * br.get('expert', 0):.0f} % of the layer at "
                   f"{fmt(r['expert_gflops_per_rank'])} GFLOP/s a rank; the busiest rank held "
                   f"{fmt(row['imbalance_p50'])}x the mean rows (p50); dispatch + combine (the wait for it) "
                   f"{100 * (br.get('dispatch', 0) + br.get('combine', 0)):.0f} %")
        L.append(f"| {dtype.upper()} layer >= {target}x the PyTorch peer ({workload}, {t} tokens/rank) | "
                 f"{fmt(row['ratio'])} | {verdict(row['ratio'], target)} | {why} |")
    for (workload, t, dtype), row in sorted(rows.items()):
        spread = row["p99"] / row["p50"]
        why = ""
        if spread > 1.2:
            why = (f"the busiest rank's rows over the mean: p50 {fmt(row['imbalance_p50'])}, p99 "
                   f"{fmt(row['imbalance_p99'])}; " + ("the step waits for it" if row["imbalance_p99"] >
                                                       1.1 * row["imbalance_p50"] else
                                                       "not the routing: one slow step (timed steps' tokens/s "
                                                       f"{fmt_stats(row['run']['layer_tokens_per_s'])})"))
        L.append(f"| step p99 <= 1.2x p50 ({workload}, {t} tokens/rank, {dtype}) | {fmt(spread)} | "
                 f"{verdict(spread, 1.2, False)} | {why} |")



def decode_section(L, folder, runs, d_model, d_ff, num_experts, num_ranks=2):
    """Decode-sized steps against the memory-bandwidth bound: the bytes of the experts a step activates over the
    copy bandwidth of bench/stream.cpp in the same run. Returns {(dtype, tokens): bound / measured}."""
    stream = os.path.join(folder, "stream.json")
    points = {p["threads"]: p["gb_per_s"] for p in json.load(open(stream))["points"]} if os.path.exists(stream) else {}
    L.append("## Decode-sized steps against the memory-bandwidth bound\n")
    L.append("A decode step of a served model routes a few tokens a rank, so each active expert's weights are read "
             "for one or a few rows: the layer is bound by memory bandwidth, not FLOPs. Bandwidth: a STREAM-like "
             "copy (bench/stream.cpp, bytes read + written) by "
             + ", ".join(f"{t} thread(s) at once: {fmt_stats(g)} GB/s" for t, g in sorted(points.items()))
             + ". Active experts: those with a kept assignment in the step (metrics.jsonl), on their owner ranks "
             "(contiguous placement); bytes: 3 d_model d_ff a matrix element of the dtype (4 FP32, 2 BF16). The "
             "bound of a step is the busiest rank's bytes over one thread's share of the bandwidth of all ranks "
             f"at once ({num_ranks} threads); bound / measured is the fraction of the bound the layer reached.\n")
    l3 = None
    lscpu = os.path.join(folder, "lscpu.txt")
    if os.path.exists(lscpu):
        l3 = next((l.split(":", 1)[1].strip() for l in open(lscpu) if l.startswith("L3 cache")), None)
    all_mb = num_experts * 3.0 * d_model * d_ff / 1e6
    L.append(f"Where the weights live matters: this CPU reports an L3 of {l3 or '?'}, and all {num_experts} experts "
             f"of the layer take {fmt(4 * all_mb)} MB in FP32 and {fmt(2 * all_mb)} MB in BF16. Weights that stay in "
             "the L3 from step to step are read faster than the copy's arrays (256 MiB each, two a thread), so a "
             "ratio above 1 says the step ran from cache, not that the bound was beaten.\n")
    L.append("| tokens/rank | dtype | active experts (mean) | busiest rank MB a step | layer step (ms) | bound (ms) | "
             "bound / measured | experts (ms, busiest rank) | bound / experts |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    share = med(points.get(num_ranks)) / num_ranks if points.get(num_ranks) else None
    out = {}
    for dtype, width in (("fp32", 4), ("bf16", 2)):
        for tokens in (1, 4, 16):
            name = f"decode-t{tokens}-{dtype}"
            path = os.path.join(folder, "runs", name, "metrics.jsonl")
            if not os.path.exists(path):
                L.append(f"| {tokens} | {dtype} | n/a ({name} did not run) ||||")
                continue
            lines = [json.loads(l) for l in open(path)][1:]
            active, busiest, layer_ms, expert_ms = [], [], [], []
            for l in lines:
                load = l["layers"][0]["expert_load"]
                on_rank = [0] * num_ranks
                for e, n in enumerate(load):
                    if n > 0:
                        on_rank[e * num_ranks // num_experts] += 1
                active.append(sum(on_rank))
                busiest.append(max(on_rank) * 3.0 * d_model * d_ff * width)
                layer_ms.append(1e3 * (l["step_time_s"] - l["time_breakdown_s"]["coordinator"]))
                expert_ms.append(1e3 * max(l["per_rank"]["expert_s"]) if l.get("per_rank") else None)
            mb = statistics.median(busiest) / 1e6
            bound_ms = None if share is None else mb / 1e3 / share * 1e3
            measured = statistics.median(layer_ms)
            experts = statistics.median(expert_ms) if None not in expert_ms else None
            out[(dtype, tokens)] = {"ratio": ratio(bound_ms, measured), "experts_ratio": ratio(bound_ms, experts),
                                    "step_ms": measured, "experts_ms": experts}
            L.append(f"| {tokens} | {dtype} | {fmt(statistics.mean(active))} | {fmt(mb)} | {fmt(measured)} | "
                     f"{fmt(bound_ms)} | **{fmt(ratio(bound_ms, measured))}** | {fmt(experts)} | "
                     f"{fmt(ratio(bound_ms, experts))} |")
    L.append("")
    return out
