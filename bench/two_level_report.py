#!/usr/bin/python3
"""Turns bench/two_level.sh's runs (a folder) into bench/TWO-LEVEL.md: flat against two-level token exchange
between hosts under SMPI, per platform and rank count.

    two_level_report.py FOLDER MARKDOWN WALL_SECONDS"""
import json
import os
import statistics
import sys

from report_util import cpu_name


def figures(folder):
    """Step time (median over the steps after step 0), dispatch and combine (mean over ranks, median over steps),
    and the p99 over ranks of a rank's dispatch + combine (median over steps)."""
    path = os.path.join(folder, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    lines = [json.loads(l) for l in open(path)][1:]
    exchange = []
    for l in lines:
        per = sorted(d + c for d, c in zip(l["per_rank"]["dispatch_s"], l["per_rank"]["combine_s"]))
        exchange.append(per[min(len(per) - 1, int(0.99 * len(per)))])
    return {"step": statistics.median(l["step_time_s"] for l in lines),
            "dispatch": statistics.median(l["time_breakdown_s"]["dispatch"] for l in lines),
            "combine": statistics.median(l["time_breakdown_s"]["combine"] for l in lines),
            "p99": statistics.median(exchange), "steps": len(lines),
            "rank_imbalance": statistics.median(l["load"]["rank_max_over_mean"] for l in lines),
            "off_host": statistics.median(sum(l["per_rank"]["sent_bytes_off_host"]) for l in lines),
            "on_host": statistics.median(sum(l["per_rank"]["sent_bytes_on_host"]) for l in lines)}


def main():
    folder, markdown, wall = sys.argv[1], sys.argv[2], sys.argv[3]
    L = ["# Two-level token exchange between hosts, simulated\n",
         "Written by bench/two_level_report.py from bench/two_level.sh (" + wall + " s of wall time). `epmoe "
         "simulate` (SimGrid SMPI): 4 ranks a node, 100 Gb/s and 1 us links, bench/scale.sh's layer (E = 2 x "
         "ranks experts, d_model 128, d_ff 512, top-2, 64 tokens a rank, the skewed synthetic workload), 3 steps, "
         "step 0 left out; the expert GEMMs at a fixed 100 GFLOP/s a rank, the ranks' host work (gate, top-k, "
         "packing) timed for real on this machine (" + cpu_name() + f", {os.cpu_count()} CPUs). `flat`: one "
         "MPI_Alltoallv over every rank each way (SMPI's pairwise exchange, skipping empty peers: up to ranks - 1 messages a rank); "
         "`two_level` (`resources.inter_host`): inside each node, then one message a rank to its counterpart on "
         "each other node (3 + nodes - 1 messages a rank). The rows crossing nodes are the same bytes either "
         "way: two-level adds one hop inside the node and merges a node's rows for a counterpart into one "
         "message. All times simulated seconds, in ms. MB through MPI: the token rows all ranks sent in a step "
         "(both trips; `per_rank.sent_bytes_off_host` and `_on_host` of metrics.jsonl, median over steps).\n",
         "| platform | ranks | nodes | exchange | messages a rank a trip (at most) | step | dispatch | combine | "
         "dispatch + combine, p99 over ranks | rank max/mean rows | MB a step through MPI: between nodes / inside nodes | "
         "step: two_level / flat | dispatch: two_level / flat |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ratios = []
    for ranks in (256, 1024):
        for platform in ("fat-tree", "dragonfly"):
            runs = {lv: figures(os.path.join(folder, f"{platform}-{ranks}-{lv}")) for lv in ("flat", "two_level")}
            nodes = ranks // 4
            for lv, r in runs.items():
                msgs = ranks - 1 if lv == "flat" else 3 + nodes - 1
                if r is None:
                    L.append(f"| {platform} | {ranks} | {nodes} | {lv} | {msgs} | n/a (not run, or it failed: "
                             f"{platform}-{ranks}-{lv}.log) ||||||||")
                    continue
                ratio = dispatch = ""
                if lv == "two_level" and runs["flat"]:
                    step_ratio = r["step"] / runs["flat"]["step"]
                    dispatch_ratio = r["dispatch"] / runs["flat"]["dispatch"]
                    ratios.append((platform, ranks, step_ratio, dispatch_ratio))
                    ratio, dispatch = f"**{step_ratio:.2f}**", f"{dispatch_ratio:.2f}"
                L.append(f"| {platform} | {ranks} | {nodes} | {lv} | {msgs} | {1e3 * r['step']:.2f} | "
                         f"{1e3 * r['dispatch']:.2f} | {1e3 * r['combine']:.2f} | {1e3 * r['p99']:.2f} | "
                         f"{r['rank_imbalance']:.1f} | {r['off_host'] / 1e6:.2f} / {r['on_host'] / 1e6:.2f} | {ratio} | "
                         f"{dispatch} |")
    L.append("")
    if ratios:
        L.append("Reading it: two-level cuts the dispatch (the trip out, mostly messages) to " +
                 ", ".join(f"{d:.2f}x ({p}, {n})" for p, n, _, d in ratios) + " of flat's, and the step to " +
                 ", ".join(f"{s:.2f}x" for _, _, s, _ in ratios) + ". The combine changes less: it holds the wait for "
                 "the busiest rank, whose experts run rank max/mean times the mean rows (the skewed workload's "
                 "hottest experts), and that wait grows with the ranks; two-level does nothing for it. Placement "
                 "(bench/SCALE.md's `replicated`) is what shortens that part.\n")
    open(markdown, "w").write("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
