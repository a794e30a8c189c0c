#!/usr/bin/python3
"""Turns the raw outputs of bench/real16.sh (a folder) into bench/SCALE-REAL.md: weak scaling of one layer at
1-16 real ranks (FP32 and BF16), dispatch + combine against bare MPI_Alltoallv at 4, 8 and 16 ranks, and epmoe
at 16 ranks against PyTorch's MixtralSparseMoeBlock on the same 16 cores and tokens.

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
    return {"layer": stats(layer), "breakdown": br, "steps": len(lines),
            "imbalance": percentile([l["load"]["rank_max_over_mean"] for l in lines], 50),
            "kernel": (summary.get("compute") or {}).get("kernel"),
            "gflops": summary.get("expert_gflops")}


def weak_section(L, folder):
    L.append("## Weak scaling: one layer, 2048 tokens a rank, one rank a core\n")
    L.append("d_model 1024, d_ff 3584, 32 experts, top-2, synthetic tokens (a new batch every step), 8 steps, step 0 "
             "left out; `mpirun --bind-to core`. Efficiency = tokens/s a rank over 1 rank's.\n")
    L.append("| dtype | ranks | layer tokens/s | per rank | efficiency | step: gate / dispatch / expert / combine (ms) "
             "| rank max/mean | expert GFLOP/s a rank |")
    L.append("|---|---|---|---|---|---|---|---|")
    notes = []
    for dtype in ("fp32", "bf16"):
        base = None
        for p in (1, 2, 4, 8, 16):
            r = run_figures(os.path.join(folder, f"weak-{dtype}-{p}"))
            if r is None:
                L.append(f"| {dtype} | {p} | n/a (the run failed: weak-{dtype}-{p}.log) ||||||")
                continue
            per = med(r["layer"]) / p
            base = base or per
            b = r["breakdown"]
            L.append(f"| {dtype} ({r['kernel']}) | {p} | {fmt_stats(r['layer'])} | {fmt(per)} | {fmt(per / base)} | "
                     + " / ".join(fmt(1e3 * b[k]) for k in ("gate", "dispatch", "expert", "combine"))
                     + f" | {fmt(r['imbalance'])} | {fmt(r['gflops'])} |")
            if p == 16:
                total = sum(b.values())
                notes.append(f"{dtype}: at 16 ranks the efficiency is {fmt(per / base)}; each rank's experts ran at "
                             f"{fmt(r['gflops'])} GFLOP/s (1 rank: see the first row), the busiest rank held "
                             f"{fmt(r['imbalance'])}x the mean rows, and combine (the return trip and the wait for the "
                             f"busiest rank) took {100 * b['combine'] / total:.0f} % of the step, dispatch "
                             f"{100 * b['dispatch'] / total:.0f} %")
    L.append("")
    if notes:
        L.append("What limits the scaling, from the rows above (the synthetic workload's popular clusters make some "
                 "experts hot, and with 2 experts a rank at 16 ranks a hot expert makes a hot rank): "
                 + "; ".join(notes) + ".\n")


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
    L.append("## epmoe at 16 ranks against PyTorch on the same 16 cores\n")
    L.append("Hugging Face's MixtralSparseMoeBlock (bench/peer_torch.py) in the machine's PyTorch at its best thread "
             "count (8 or 16, searched), one process; epmoe at 16 ranks, one a core. The same 32-expert checkpoint "
             "and the same tokens: 32768 a step (2048 a rank), a new batch every step, 6 timed steps. epmoe's "
             "layer tokens/s includes its RMSNorm and gate; the peer's time is the block alone.\n")
    L.append("| dtype | epmoe tokens/s | epmoe kernel | peer tokens/s | peer torch threads | epmoe / peer |")
    L.append("|---|---|---|---|---|---|")
    for dtype in ("fp32", "bf16"):
        r = run_figures(os.path.join(folder, f"peer16-{dtype}"))
        p = load_json(os.path.join(folder, f"peer_{dtype}_32768.json"))
        pt = p["points"][0]["tokens_per_s"] if p else None
        L.append(f"| {dtype} | {fmt_stats(r['layer']) if r else 'n/a'} | {r['kernel'] if r else ''} | "
                 f"{fmt_stats(pt)} | {p['torch_threads'] if p else ''} | "
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
    L = ["# epmoe on 16 real ranks\n",
         f"Written by bench/real16_report.py from bench/real16.sh's outputs. Machine: {model}, {cpus} CPUs, {mpi}; "
         "epmoe built on Debian 12 (GCC 12, Open MPI 4.1 headers, oneDNN 2.6, OpenBLAS 0.3.21) and carried with "
         "its libraries; the machine's own libmpi ran it. Each figure is a median over the timed steps with "
         "(min-max).\n"]
    if args.command:
        L.append(f"Command: `{args.command}`\n")
    weak_section(L, args.folder)
    dispatch_section(L, args.folder)
    peer_section(L, args.folder)
    open(args.markdown, "w").write("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
