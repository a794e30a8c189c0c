#!/usr/bin/python3
"""The training section of bench/RESULTS.md: `epmoe train` at 1 and 2 ranks against bench/peer_train.py (HF's
MixtralForCausalLM trained by Debian's torch with autograd and torch.optim.AdamW) on the same checkpoint, data
and optimizer settings, with the loss cross-check, the step breakdowns and the model FLOPs utilisation. Used by
report.py; run alone (bench/run.sh --only train) it writes the section by itself:

    report_train.py FOLDER --markdown TRAIN.md --json train.json [--quick 1]

FOLDER/train holds run.sh's train stage: model/, train.safetensors, flops.json, peak.json (bench_kernels' Peak),
peer_search.json, runs/epmoe-<ranks>-<r>/ (train_log.jsonl, summary.json) with runs/epmoe-<ranks>-<r>.log, and
the peer's timed runs peer-<cores>-<r>.json (one process a repetition)."""
import glob
import json
import os
import statistics

from report_util import fmt, fmt_stats, load_kernels, metric, ratio, standalone_main, stats, verdict

TARGET, LOSS_TOLERANCE = 1.5, 1e-4
EPMOE_RANKS = (1, 2)


def load_json(path):
    return json.load(open(path)) if os.path.exists(path) else None


def epmoe_runs(t, ranks):
    """[(log path, [step lines] or None)] of the runs on `ranks` ranks."""
    out = []
    for log in sorted(glob.glob(os.path.join(t, "runs", f"epmoe-{ranks}-*.log"))):
        path = os.path.join(log[:-4], "train_log.jsonl")
        lines = [json.loads(l) for l in open(path)] if os.path.exists(path) else None
        out.append((log, [l for l in lines if "step" in l and "lm_loss" in l] if lines else None))
    return out


def first_error(log):
    lines = [l.strip() for l in open(log) if l.strip()] if os.path.exists(log) else []
    return next((l for l in lines if "epmoe: error" in l), lines[-1] if lines else "no output")


def timed(steps):
    """The steps a figure counts: all but the first (first touch of every buffer; the peer's is left out too)."""
    return steps[1:] or steps


def epmoe_figures(t, ranks, flops, peak):
    runs = epmoe_runs(t, ranks)
    ok = [s for _, s in runs if s]
    per_run = [statistics.median(s["tokens_per_s"] for s in timed(steps)) for steps in ok]
    parts = {}
    for steps in ok:
        for s in timed(steps):
            for k, v in s.get("time_s", {}).items():
                if v is not None:  # coordinator: null (training runs no rounds)
                    parts.setdefault(k, []).append(v)
    tps = stats(per_run) if per_run else None
    return {"ranks": ranks, "runs": len(runs), "tokens_per_s": tps,
            "breakdown_s": {k: statistics.median(v) for k, v in parts.items()},
            "mfu": mfu(tps, flops, peak, ranks), "losses": [[s["lm_loss"] for s in steps] for steps in ok],
            "errors": [first_error(log) for log, s in runs if not s]}


def peer_figures(t, cores, flops, peak):
    res = [load_json(p) for p in sorted(glob.glob(os.path.join(t, f"peer-{cores}-*.json")))]
    res = [r for r in res if r]
    per_run = [r["tokens_per_s"]["median"] for r in res]
    tps = stats(per_run) if per_run else None
    parts = {k: statistics.median(r["breakdown_s"][k] for r in res) for k in ("forward_s", "backward_s", "optimizer_s")} if res else {}
    setting = {k: res[0][k] for k in ("openblas_num_threads", "torch_threads", "omp_wait_policy")} if res else None
    return {"cores": cores, "runs": len(res), "tokens_per_s": tps, "breakdown_s": parts, "setting": setting,
            "mfu": mfu(tps, flops, peak, cores), "losses": [[s["lm_loss"] for s in r["steps"]] for r in res]}


def mfu(tps, flops, peak, cores):
    """6 N T FLOPs a step over its time, against the measured FP32 peak of the cores used."""
    if not tps or not flops or not peak:
        return None
    return tps["median"] * flops["flops_per_step"] / flops["tokens_per_step"] / (peak["median"] * 1e9 * cores)


def loss_check(ours, peer):
    """Worst relative difference of epmoe's lm_loss against the peer's, step 0 and over all steps."""
    if not ours or not peer:
        return None
    a, b = ours[0], peer[0]
    n = min(len(a), len(b))
    rel = [abs(a[i] - b[i]) / abs(b[i]) for i in range(n)]
    return {"step0": rel[0], "all_steps": max(rel), "steps": n, "epmoe_step0": a[0], "peer_step0": b[0]}


def breakdown_text(parts):
    return ", ".join(f"{k.removesuffix('_s')} {fmt(v * 1e3)}" for k, v in parts.items()) or "n/a"


def train_section(L, folder):
    """Appends the section; returns its figures (results.json's "train")."""
    t = os.path.join(folder, "train")
    cfg = load_json(os.path.join(t, "model", "config.json")) or {}
    flops = load_json(os.path.join(t, "flops.json"))
    peak = metric(load_kernels(os.path.join(t, "peak.json")), "Peak", "GFLOPS")
    ours = {n: epmoe_figures(t, n, flops, peak) for n in EPMOE_RANKS}
    peer = {n: peer_figures(t, n, flops, peak) for n in EPMOE_RANKS}
    for n in EPMOE_RANKS:
        ours[n]["ratio"] = ratio(ours[n]["tokens_per_s"] and ours[n]["tokens_per_s"]["median"],
                                 peer[n]["tokens_per_s"] and peer[n]["tokens_per_s"]["median"])
        ours[n]["loss_check"] = loss_check(ours[n]["losses"], peer[n]["losses"])
    L.append("## Training: epmoe train against the PyTorch peer\n")
    L.append(f"A Mixtral-architecture checkpoint written by bench/peer_train.py (random FP32 weights, seed 0): "
             f"{cfg.get('num_hidden_layers', '?')} layers, d_model {cfg.get('hidden_size', '?')}, d_ff "
             f"{cfg.get('intermediate_size', '?')}, {cfg.get('num_local_experts', '?')} experts top-"
             f"{cfg.get('num_experts_per_tok', '?')}, {cfg.get('num_attention_heads', '?')} heads / "
             f"{cfg.get('num_key_value_heads', '?')} KV heads of {cfg.get('head_dim', '?')}, vocab "
             f"{cfg.get('vocab_size', '?')}, router_aux_loss_coef {cfg.get('router_aux_loss_coef', '?')}; "
             f"{flops['tokens_per_step'] if flops else '?'} tokens a step (windows of uniform token ids, the same rows "
             "in the same order on both sides: `--sampler sequential`). Both run LM + aux loss, the backward, global-"
             "norm clipping at 1.0 and AdamW (lr 0.003 after 2 warmup steps, cosine to 0.0003, betas 0.9/0.95, weight "
             "decay 0.1 on matrices but the routers). epmoe: `epmoe train` on N ranks, one thread each; the peer: "
             "autograd and torch.optim.AdamW (foreach) at its best thread setting for the same cores, one process a "
             "repetition. tokens/s: the median over a run's steps after the first, median (min-max) over runs. "
             f"MFU: 6 x {fmt(flops['active_params'] / 1e6 if flops else None)} M active matmul weights x tokens / "
             f"time / the measured FP32 peak ({fmt_stats(peak)} GFLOP/s a core) x cores.\n")
    L.append("| cores | epmoe tokens/s | peer tokens/s | epmoe / peer | MFU epmoe / peer | epmoe ms a step "
             "| peer ms a step | peer setting | step-0 loss rel. diff (worst over steps) |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for n in EPMOE_RANKS:
        o, p, c = ours[n], peer[n], ours[n]["loss_check"]
        setting = p["setting"]
        L.append(f"| {n} | {fmt_stats(o['tokens_per_s'])} | {fmt_stats(p['tokens_per_s'])} | **{fmt(o['ratio'])}** | "
                 f"{fmt(o['mfu'])} / {fmt(p['mfu'])} | {breakdown_text(o['breakdown_s'])} | "
                 f"{breakdown_text(p['breakdown_s'])} | "
                 + (f"OPENBLAS_NUM_THREADS={setting['openblas_num_threads']}, {setting['torch_threads']} torch "
                    f"threads, OMP_WAIT_POLICY={setting['omp_wait_policy'] or 'unset'}" if setting else "n/a")
                 + f" | {fmt(c and c['step0'])} ({fmt(c and c['all_steps'])}) |")
    L.append("")
    errors = [e for n in EPMOE_RANKS for e in ours[n]["errors"]]
    if errors:
        L.append("Training runs that failed: " + "; ".join(errors) + "\n")
    return {"epmoe": {str(n): v for n, v in ours.items()}, "peer": {str(n): v for n, v in peer.items()},
            "flops": flops, "peak_gflops": peak, "config": cfg}


def gemm_bound(figs, n):
    """The ratio a step of epmoe's GEMMs alone (time_s.gemm, measured inside them) would reach, as text."""
    gemm, tps = figs["epmoe"][str(n)]["breakdown_s"].get("gemm"), figs["peer"][str(n)]["tokens_per_s"]
    flops = figs["flops"]
    if not gemm or not tps or not flops:
        return ""
    peer_step = flops["tokens_per_step"] / tps["median"]
    return (f"; epmoe's GEMMs alone take {fmt(gemm * 1e3)} ms of its step, so a step of those GEMMs and nothing "
            f"else would be {fmt(peer_step / gemm)}x the peer")


def train_targets(L, figs):
    for n in EPMOE_RANKS:
        o = figs["epmoe"][str(n)]
        why = ""
        if o["ratio"] is not None and o["ratio"] < TARGET:
            p = figs["peer"][str(n)]["breakdown_s"]
            why = (f"ms a step, epmoe {breakdown_text(o['breakdown_s'])} against the peer's {breakdown_text(p)}: "
                   f"MFU {fmt(o['mfu'])} against {fmt(figs['peer'][str(n)]['mfu'])}: with every FLOP at the measured "
                   f"peak the ratio would be {fmt(1 / figs['peer'][str(n)]['mfu'])}x (epmoe's GEMMs on oneDNN's "
                   "dnnl_sgemm, the peer's on OpenBLAS)" + gemm_bound(figs, n))
        L.append(f"| training tokens/s >= {TARGET}x the PyTorch peer ({n} core(s)) | {fmt(o['ratio'])} | "
                 f"{verdict(o['ratio'], TARGET)} | {why} |")
        c = o["loss_check"]
        L.append(f"| training step-0 LM loss = the peer's within {LOSS_TOLERANCE:g} relative ({n} rank(s)) | "
                 f"{fmt(c and c['step0'])} | {verdict(c and c['step0'], LOSS_TOLERANCE, False)} | |")


def main():
    standalone_main("train", "epmoe training bench", train_section, train_targets)


if __name__ == "__main__":
    main()
