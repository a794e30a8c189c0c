#!/usr/bin/python3
"""Turns the raw outputs of bench/real16.sh (a folder) into bench/SCALE-REAL.md: weak scaling of one layer at
1-16 real ranks on uniform tokens (FP32 and BF16, the MPI and the shared-memory exchange, 8 ranks x 2 threads),
the 1- and 16-rank runs again in turn (pairs), the machine's own ceiling (16 one-rank runs at once), epmoe on 16 cores against PyTorch's MixtralSparseMoeBlock
on the same cores and tokens, weak scaling on the skewed synthetic workload, and dispatch + combine against bare
MPI_Alltoallv at 4, 8 and 16 ranks.

    real16_report.py FOLDER --markdown bench/SCALE-REAL.md [--command TEXT]"""
import argparse
import json
import os

from report_layer import percentile
from report_util import fmt, fmt_stats, med, ratio, stats


def load_json(path):
    return json.load(open(path)) if os.path.exists(path) else None


def run_figures(folder):
    """Layer tokens/s (step time minus the coordinator) over the steps after step 0, and the breakdown."""
    path = os.path.join(folder, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    lines = [json.loads(l) for l in open(path)][1:]
    layer = [l["tokens"] / (l["step_time_s"] - l["time_breakdown_s"]["coordinator"]) for l in lines]
    br = {k: sum(l["time_breakdown_s"][k] for l in lines) / len(lines) for k in lines[0]["time_breakdown_s"]}
    summary = load_json(os.path.join(folder, "summary.json")) or {}
    # Each rank's expert rows a second over the timed steps: how fast its core ran the expert phase.
    ranks = range(len(lines[0]["per_rank"]["expert_s"]))
    speed = [sum(l["per_rank"]["rows_run"][r] for l in lines) / sum(l["per_rank"]["expert_s"][r] for l in lines)
             for r in ranks] if "rows_run" in lines[0]["per_rank"] else None
    return {"layer": stats(layer), "breakdown": br, "steps": len(lines), "rank_speed": speed,
            "imbalance": percentile([l["load"]["rank_max_over_mean"] for l in lines], 50),
            "kernel": (summary.get("compute") or {}).get("kernel"),
            "gflops": summary.get("expert_gflops")}


EXCHANGES = {"mpi": "mpi", "shm": "shm, shared work", "shm-owner": "shm, owner only"}


def weak_row(L, folder, name, dtype, split, exchange, base):
    """One weak-scaling row; returns the run's tokens/s a core (None where it failed)."""
    r = run_figures(os.path.join(folder, name))
    if r is None:
        L.append(f"| {dtype} | {split} | {exchange} | n/a (the run failed: {name}.log) |||||||")
        return None
    ranks, threads = (int(v) for v in split.split("x"))
    per = med(r["layer"]) / (ranks * threads)
    b = r["breakdown"]
    L.append(f"| {dtype} ({r['kernel']}) | {split} | {exchange} | {fmt_stats(r['layer'])} | {fmt(per)} | "
             f"{fmt(per / base) if base else 1} | " + " / ".join(fmt(1e3 * b[k]) for k in
                                                         ("gate", "dispatch", "expert", "combine"))
             + f" | {fmt(r['imbalance'])} | {fmt(r['gflops'])} |")
    return per


def weak_section(L, folder):
    L.append("## Weak scaling on uniform tokens: one layer, 2048 tokens a core\n")
    L.append("The checkpoint of the PyTorch comparison below (d_model 1024, d_ff 3584, 32 experts, top-2) and its "
             "uniform tokens (`peer_torch.py make`: Gaussian hidden states, a new batch every step, 7 batches in "
             "turn), 2048 tokens a rank (4096 for 8 ranks x 2 threads); 16 steps, step 0 left out. ranks x threads: "
             "one rank a core (`mpirun --bind-to core`); 2 threads a rank run the experts as tasks. exchange: "
             "`resources.exchange`; with shm, shared work = the ranks of the host take row blocks of each other's "
             "experts once their own are taken (`resources.work_sharing` = host, the default), owner only = each "
             "expert runs on its owner (none). Efficiency = tokens/s a core over the 1 x 1 run's.\n")
    L.append("| dtype | ranks x threads | exchange | layer tokens/s | per core | efficiency | step: gate / dispatch / "
             "expert / combine (ms) | rank max/mean | expert GFLOP/s a rank |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for dtype in ("fp32", "bf16"):
        base = weak_row(L, folder, f"weak-{dtype}-1x1-shm", dtype, "1x1", "shm", None)
        for split in ("2x1", "4x1", "8x1", "16x1", "8x2"):
            for exchange in ("mpi", "shm-owner", "shm"):
                if os.path.exists(os.path.join(folder, f"weak-{dtype}-{split}-{exchange}.log")):
                    weak_row(L, folder, f"weak-{dtype}-{split}-{exchange}", dtype, split, EXCHANGES[exchange], base)
    L.append("")


def rank_speeds(one, many):
    """The 16 x 1 ranks' expert speeds over the 1 x 1 rank's: 'slowest / median / fastest (sum / 16)'."""
    if not one["rank_speed"] or not many["rank_speed"]:
        return "n/a"
    rel = sorted(v / one["rank_speed"][0] for v in many["rank_speed"])
    return f"{fmt(rel[0])} / {fmt(rel[len(rel) // 2])} / {fmt(rel[-1])} ({fmt(sum(rel) / len(rel))})"


def pairs_section(L, folder):
    """The 1 x 1 and 16 x 1 runs in turn (part pairs): each round's efficiency from runs seconds apart."""
    rounds = sorted({int(n[4:].split("-")[0]) for n in os.listdir(folder) if n.startswith("pair") and
                     n[4:].split("-")[0].isdigit()})
    if not rounds:
        return
    L.append("## Weak scaling at 16 ranks, paired\n")
    L.append("The 1 x 1 and 16 x 1 (shm, shared work) runs of the table above again, one right after the other, "
             "in rounds (part pairs): each round's efficiency compares runs seconds apart, where the rows of the "
             "table above are minutes apart and the machine's load drifts in between. Rank speed: each 16 x 1 "
             "rank's expert rows a second (rows it ran over its time in the expert phase) over the 1 x 1 run's, "
             "slowest / median / fastest; their sum over 16 is how fast the 16 busy cores ran the experts together "
             "against 16 x one core alone, the part of the efficiency the machine's cores set.\n")
    L.append("| dtype | round | 1 x 1 tokens/s | 16 x 1 tokens/s | efficiency | rank speed: slowest / median / "
             "fastest (sum / 16) | step: gate / dispatch / expert / combine (ms), 1 x 1 then 16 x 1 |")
    L.append("|---|---|---|---|---|---|---|")
    for dtype in ("fp32", "bf16"):
        effs = []
        for r in rounds:
            one = run_figures(os.path.join(folder, f"pair{r}-{dtype}-1x1"))
            many = run_figures(os.path.join(folder, f"pair{r}-{dtype}-16x1"))
            if not one or not many:
                L.append(f"| {dtype} | {r} | n/a (a run failed: pair{r}-{dtype}-*.log) ||||")
                continue
            eff = med(many["layer"]) / 16 / med(one["layer"])
            effs.append(eff)
            br = ", ".join(" / ".join(fmt(1e3 * x["breakdown"][k]) for k in ("gate", "dispatch", "expert", "combine"))
                           for x in (one, many))
            L.append(f"| {dtype} | {r} | {fmt_stats(one['layer'])} | {fmt_stats(many['layer'])} | {fmt(eff)} | "
                     f"{rank_speeds(one, many)} | {br} |")
        if effs:
            L.append(f"| {dtype} | median | | | **{fmt(sorted(effs)[len(effs) // 2])}** ({fmt(min(effs))}-"
                     f"{fmt(max(effs))}) | | |")
    L.append("")


def variants_section(L, folder):
    """The FP32 pairs for each way of running the packed weights (part variants): efficiency and rank speed."""
    names = sorted({n.split("-")[1] for n in os.listdir(folder) if n.startswith("variant") and n.endswith(".log")})
    if not names:
        return
    L.append("## FP32 kernel variants at 16 ranks, paired\n")
    L.append("Part variants: for each way of running onednn/fp32's packed weights, a 1 x 1 run and then a 16 x 1 run "
             "(shm, shared work), in interleaved rounds. whole: whole matrices (the default); panels<N>: "
             "`compute.weight_panel_kib=N`; off: `compute.pack_weights=off` (the runtime-row-count matmuls). "
             "Efficiency and rank speed as in the paired table; median (min-max) over the rounds.\n")
    L.append("| variant | rounds | 1 x 1 tokens/s | 16 x 1 tokens/s | efficiency | rank speed sum / 16 |")
    L.append("|---|---|---|---|---|---|")
    for name in names:
        ones, manys, effs, sums = [], [], [], []
        for f in sorted(os.listdir(folder)):
            if not (f.startswith("variant") and f.endswith(f"-{name}-1x1") and os.path.isdir(os.path.join(folder, f))):
                continue
            one = run_figures(os.path.join(folder, f))
            many = run_figures(os.path.join(folder, f[:-len("1x1")] + "16x1"))
            if not one or not many:
                continue
            ones.append(med(one["layer"]))
            manys.append(med(many["layer"]))
            effs.append(manys[-1] / 16 / ones[-1])
            if one["rank_speed"] and many["rank_speed"]:
                sums.append(sum(v / one["rank_speed"][0] for v in many["rank_speed"]) / len(many["rank_speed"]))
        span = lambda v: f"{fmt(sorted(v)[len(v) // 2])} ({fmt(min(v))}-{fmt(max(v))})" if v else "n/a"
        L.append(f"| {name} | {len(effs)} | {span(ones)} | {span(manys)} | **{span(effs)}** | {span(sums)} |")
    L.append("")


def at_once(folder, prefix, dtype):
    """Tokens/s of the 16 runs PREFIX-0 .. PREFIX-15 (None unless all 16 ran), and epmoe 16 x 1's (shm)."""
    runs = [run_figures(os.path.join(folder, f"{prefix}-{c}")) for c in range(16)]
    rates = [med(r["layer"]) for r in runs if r]
    ep = run_figures(os.path.join(folder, f"weak-{dtype}-16x1-shm"))
    return (rates if len(rates) == 16 else None), (med(ep["layer"]) if ep else None)


def at_once_table(L, folder, prefix, alone_name):
    """16 runs PREFIX-<dtype>-0..15 at once against one alone (run alone_name, {dtype} filled in), against 16 x the
    1-rank layer and against epmoe 16 x 1 (shm)."""
    L.append("| dtype | one run alone | each of 16 at once: median (min-max over runs) | at once / alone | sum of the 16 "
             "| sum / (16 x the 1 x 1 layer) | epmoe 16 x 1 (shm) / sum |")
    L.append("|---|---|---|---|---|---|---|")
    for dtype in ("fp32", "bf16"):
        rates, ep = at_once(folder, f"{prefix}-{dtype}", dtype)
        alone = run_figures(os.path.join(folder, alone_name.format(dtype=dtype)))
        one = run_figures(os.path.join(folder, f"weak-{dtype}-1x1-shm"))
        if not rates:
            L.append(f"| {dtype} | n/a (a run failed: {prefix}-{dtype}-*.log) ||||||")
            continue
        a = med(alone["layer"]) if alone else None
        one_rate = med(one["layer"]) if one else None
        L.append(f"| {dtype} | {fmt(a)} | {fmt_stats(stats(rates))} | {fmt(ratio(med(stats(rates)), a))} | "
                 f"{fmt(sum(rates))} | {fmt(ratio(sum(rates), 16 * one_rate if one_rate else None))} | "
                 f"**{fmt(ratio(ep, sum(rates)))}** |")
    L.append("")


def ceiling_section(L, folder):
    L.append("## The machine's own limit: 16 one-rank runs at once\n")
    L.append("16 independent epmoe runs of one rank (each an MPI singleton pinned to its core with taskset, no "
             "exchange at all) on the 2048-token file, started together: what 16 busy cores give each other when each "
             "runs the 1-rank layer (its alone figure is the 1 x 1 row above). Not a bound on the weak scaling above: "
             "a 16 x 1 rank runs other work (the next table), and may pass it.\n")
    at_once_table(L, folder, "ceiling", "weak-{dtype}-1x1-shm")
    if os.path.isdir(os.path.join(folder, "rankwork-fp32-alone")):
        L.append("A 16 x 1 rank runs 2 experts of 2048 rows, larger GEMMs than the 1-rank layer's 32 experts of 128 "
                 "rows. The same work as one run (a synthetic layer of 2 experts, top-2, 2048 tokens; part rankwork), "
                 "alone and 16 at once: the limit of the weak scaling above is its sum over 16 x the 1 x 1 layer.\n")
        at_once_table(L, folder, "rankwork", "rankwork-{dtype}-alone")


def skewed_section(L, folder):
    L.append("## Weak scaling on the synthetic workload\n")
    L.append("The same layer, synthetic tokens from 32 clusters of Zipf popularity (`workload.skew` 1.2): some "
             "experts are hot, and with 2 experts a rank at 16 ranks a hot expert makes a hot rank. 2048 tokens a "
             "rank, 16 steps, the default exchange.\n")
    L.append("| dtype | ranks | layer tokens/s | efficiency | step: gate / dispatch / expert / combine (ms) | "
             "rank max/mean |")
    L.append("|---|---|---|---|---|---|")
    for dtype in ("fp32", "bf16"):
        base = None
        for p in (1, 16):
            r = run_figures(os.path.join(folder, f"skewed-{dtype}-{p}x1"))
            if r is None:
                L.append(f"| {dtype} | {p} | n/a (skewed-{dtype}-{p}x1.log) ||||")
                continue
            per = med(r["layer"]) / p
            base = base or per
            b = r["breakdown"]
            L.append(f"| {dtype} | {p} | {fmt_stats(r['layer'])} | {fmt(per / base)} | "
                     + " / ".join(fmt(1e3 * b[k]) for k in ("gate", "dispatch", "expert", "combine"))
                     + f" | {fmt(r['imbalance'])} |")
    L.append("")


def dispatch_section(L, folder):
    L.append("## Dispatch + combine against bare MPI_Alltoallv\n")
    L.append("bench_dispatch (identity experts; see bench/RESULTS.md for what each column is), wait mode block "
             "(one rank a core), seconds per layer, max over ranks.\n")
    L.append("| ranks | tokens/rank | routing | bare 2x MPI_Alltoallv | epmoe dispatch + combine | ratio | wrong |")
    L.append("|---|---|---|---|---|---|---|")
    for p in (4, 8, 16):
        path = os.path.join(folder, f"dispatch-{p}.jsonl")
        points = [json.loads(l) for l in open(path) if l.strip()] if os.path.exists(path) else []
        if not points:
            L.append(f"| {p} | n/a (dispatch-{p}.err) ||||||")
        for d in points:
            if d.get("wait") != "block":
                continue
            L.append(f"| {p} | {d['tokens_per_rank']} | {d['routing']} | {fmt_stats(d['bare_alltoallv_s'], 1e6)} us | "
                     f"{fmt_stats(d['ours_s'], 1e6)} us | **{d['ours_over_bare']:.2f}x** | {d['wrong']} |")
    L.append("")


def peer_section(L, folder):
    L.append("## epmoe against PyTorch on the same 16 cores\n")
    L.append("Hugging Face's MixtralSparseMoeBlock (bench/peer_torch.py) in the machine's PyTorch at its best thread "
             "count (8 or 16, searched; OPENBLAS_NUM_THREADS 1), one process, against epmoe's 16-core runs of the "
             "weak-scaling table: the same checkpoint and the same tokens, 32768 a step, a new batch every step. "
             "epmoe's layer tokens/s includes its RMSNorm and gate; the peer's time is the block alone.\n")
    L.append("| dtype | peer tokens/s | peer torch threads | epmoe run | epmoe tokens/s | epmoe / peer |")
    L.append("|---|---|---|---|---|---|")
    for dtype in ("fp32", "bf16"):
        p = load_json(os.path.join(folder, f"peer_{dtype}_32768.json"))
        pt = p["points"][0]["tokens_per_s"] if p else None
        for split, exchange in (("16x1", "shm"), ("16x1", "mpi"), ("8x2", "shm")):
            r = run_figures(os.path.join(folder, f"weak-{dtype}-{split}-{exchange}"))
            L.append(f"| {dtype} | {fmt_stats(pt)} | {p['torch_threads'] if p else ''} | {split}, {exchange}"
                     f"{', ' + r['kernel'] if r else ''} | {fmt_stats(r['layer']) if r else 'n/a'} | "
                     f"**{fmt(ratio(med(r['layer']) if r else None, med(pt)))}** |")
    L.append("")


def main():
    a = argparse.ArgumentParser()
    a.add_argument("folder")
    a.add_argument("--markdown", required=True)
    a.add_argument("--command", default="")
    args = a.parse_args()
    machine = open(os.path.join(args.folder, "machine.txt")).read() if os.path.exists(
        os.path.join(args.folder, "machine.txt")) else ""
    model = next((l.split(":", 1)[1].strip() for l in machine.splitlines() if l.startswith("Model name")), "?")
    cpus = next((l.split(":", 1)[1].strip() for l in machine.splitlines() if l.startswith("CPU(s)")), "?")
    mpi = next((l.strip() for l in machine.splitlines() if "Open MPI" in l or "mpirun" in l), "?")
    l3 = next((l.split(":", 1)[1].strip() for l in machine.splitlines() if l.startswith("L3 cache")), "?")
    L = ["# epmoe on 16 real ranks\n",
         f"Written by bench/real16_report.py from bench/real16.sh's outputs. Machine: {model}, {cpus} CPUs, L3 {l3}, {mpi}; "
         "epmoe built on Debian 12 (GCC 12, Open MPI 4.1 headers, oneDNN 2.6, OpenBLAS 0.3.21) and carried with "
         "its libraries; the machine's own libmpi ran it. Each figure is a median over the timed steps with "
         "(min-max). The machine is a shared virtual one: the same run repeated in another call moved by up to 2x "
         "(a 1 x 1 BF16 run gave 14,383 tokens/s in one call and 7,372 in another), so read each ratio with its "
         "min-max, and the rows of one table, taken minutes apart, as one sample each.\n"]
    if args.command:
        L.append(f"Command: `{args.command}`\n")
    weak_section(L, args.folder)
    pairs_section(L, args.folder)
    variants_section(L, args.folder)
    ceiling_section(L, args.folder)
    peer_section(L, args.folder)
    skewed_section(L, args.folder)
    dispatch_section(L, args.folder)
    open(args.markdown, "w").write("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
