#!/usr/bin/python3
"""The whole-model section of bench/RESULTS.md: epmoe eval and generate on 2 ranks against bench/peer_model.py
(HF's MixtralForCausalLM in Debian's torch) on the same checkpoint and tokens, with the NLL and greedy-id
cross-checks and the targets these figures decide. Used by report.py; run alone (bench/run.sh --only model) it
writes the section by itself:

    report_model.py FOLDER --markdown MODEL.md --json model.json [--quick 1]

FOLDER/model holds run.sh's model stage: runs/eval-<r>/ (eval.json, metrics.jsonl), runs/gen-b<B>-<r>/
(summary.json), runs/*.check.json, peer_search_{eval,decode}.json and the peer's timed passes, one process a
repetition: peer_eval_<windows a forward>-<r>.json, peer_decode_<sequences>-<r>.json."""
import glob
import json
import os

from report_util import fmt, fmt_stats, med, ratio, standalone_main, stats, verdict

# Targets: eval (large batches, FLOP-bound) as the FP32 layer at 2048 tokens; decode (a token a sequence,
# bound by weight bytes and per-step overheads) as the layer at 64 tokens.
EVAL_TARGET, DECODE_TARGET, NLL_TOLERANCE = 1.15, 2.0, 1e-4
EPMOE_PARTS = ("embed", "attention", "gate", "dispatch", "experts", "combine", "lm_head")
PEER_PARTS = ("embed", "attention", "moe", "lm_head")
RANKS = 2


def load_json(path):
    return json.load(open(path)) if os.path.exists(path) else None


def run_dirs(m, prefix):
    """[(name, results dir)] of the runs named <prefix>-<r>, in order; failed runs have no results file."""
    logs = sorted(glob.glob(os.path.join(m, "runs", prefix + "-*.log")))
    return [(os.path.basename(l)[:-4], l[:-4]) for l in logs]


def first_error(log):
    lines = [l.strip() for l in open(log) if l.strip()] if os.path.exists(log) else []
    return next((l for l in lines if "epmoe: error" in l), lines[-1] if lines else "no output")


def shares(parts):
    total = sum(parts.values())
    return {k: v / total for k, v in parts.items()} if total else {}


def mean_parts(dicts, names, scale=1.0):
    return {k: scale * sum(d.get(k, 0.0) for d in dicts) / len(dicts) for k in names} if dicts else {}


def eval_figures(m):
    """epmoe eval over its runs: steady tokens/s (step 0 excluded where a run has more), eval.json tokens/s
    (every step), breakdown shares; the peer's tokens/s over its passes; the NLL checks."""
    steady, whole, parts, errors, checks = [], [], [], [], []
    for name, d in run_dirs(m, "eval"):
        e = load_json(os.path.join(d, "eval.json"))
        if e is None:
            errors.append(f"`{name}`: {first_error(d + '.log')}")
            continue
        steps = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
        timed = steps[1:] if len(steps) > 1 else steps
        steady.append(sum(s["tokens"] for s in timed) / sum(s["step_time_s"] for s in timed))
        whole.append(e["tokens_per_s"])
        parts.append(e["time_breakdown_s"])
        check = load_json(d + ".check.json")
        if check:
            checks.append(check)
    peer, pts = peer_points(m, "eval_*")
    pp = pts[0] if pts else None
    peer_tps = stats([r["tokens_per_s"] for p in pts for r in p["reps"]]) if pts else None
    return {"epmoe_tokens_per_s": stats(steady) if steady else None,
            "epmoe_tokens_per_s_all_steps": stats(whole) if whole else None,
            "epmoe_steps_a_run": len(steps) if whole else None,
            "epmoe_breakdown_share": shares(mean_parts(parts, EPMOE_PARTS)),
            "peer_tokens_per_s": peer_tps,
            "peer_breakdown_share": shares(mean_parts([p["time_breakdown_s"] for p in pts], PEER_PARTS)),
            "peer_setting": setting(peer), "peer_batch": pp["batch"] if pp else None,
            "windows": pp["windows"] if pp else None, "ctx": pp["ctx"] if pp else None,
            "ratio": ratio(med(stats(steady)) if steady else None, med(peer_tps)),
            "nll_checks": checks, "errors": errors}


def decode_figures(m, b):
    """epmoe generate at b prompts a rank over its runs against the peer at RANKS * b sequences."""
    p50, p99, prefill, parts, errors, checks = [], [], [], [], [], []
    for name, d in run_dirs(m, f"gen-b{b}"):
        s = load_json(os.path.join(d, "summary.json"))
        if s is None:
            errors.append(f"`{name}`: {first_error(d + '.log')}")
            continue
        g = s["generate"]
        p50.append(g["decode_ms_per_token_p50"])
        p99.append(g["decode_ms_per_token_p99"])
        prefill.append(g["prefill_tokens_per_s"])
        parts.append({k: 1e3 * v / g["decode_steps"] for k, v in g["decode_time_breakdown_s"].items()})
        check = load_json(d + ".check.json")
        if check:
            checks.append(check)
    peer, pts = peer_points(m, f"decode_{RANKS * b}")
    pp = pts[0] if pts else None
    peer_parts = mean_parts([{k: 1e3 * v / (p["new_tokens"] - 1) for k, v in p["time_breakdown_s"].items()}
                             for p in pts], PEER_PARTS)
    over_reps = lambda key: stats([r[key] for p in pts for r in p["reps"]]) if pts else None
    return {"batch_per_rank": b, "sequences": RANKS * b,
            "epmoe_ms_p50": stats(p50) if p50 else None, "epmoe_ms_p99": stats(p99) if p99 else None,
            "epmoe_prefill_tokens_per_s": stats(prefill) if prefill else None,
            "epmoe_breakdown_ms": mean_parts(parts, EPMOE_PARTS),
            "peer_ms_p50": over_reps("decode_ms_p50"), "peer_ms_p99": over_reps("decode_ms_p99"),
            "peer_prefill_tokens_per_s": over_reps("prefill_tokens_per_s"),
            "peer_breakdown_ms": peer_parts, "peer_setting": setting(peer),
            "new_tokens": pp["new_tokens"] if pp else None, "prompt_len": pp["prompt_len"] if pp else None,
            "speedup": ratio(med(over_reps("decode_ms_p50")), med(stats(p50)) if p50 else None),
            "id_checks": checks, "errors": errors}


def peer_points(m, pattern):
    """The peer's timed processes peer_<pattern>-<r>.json: (the last one's JSON, every process's point)."""
    runs = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(m, f"peer_{pattern}-*.json")))]
    return (runs[-1] if runs else None), [r["points"][0] for r in runs]


def setting(res):
    if not res:
        return None
    return {k: res[k] for k in ("openblas_num_threads", "torch_threads", "omp_wait_policy")}


def setting_text(s):
    return "n/a" if not s else (f"OPENBLAS_NUM_THREADS={s['openblas_num_threads']}, {s['torch_threads']} torch "
                                f"threads, OMP_WAIT_POLICY={s['omp_wait_policy'] or 'unset'}")


def share_text(sh, names):
    return "/".join(f"{100 * sh.get(k, 0):.0f}%" for k in names) if sh else "n/a"


def ms_text(parts, names):
    return "/".join(fmt(parts.get(k, 0.0)) for k in names) if parts else "n/a"


def search_rows(L, m):
    L.append("Every thread setting of the peer, each in a fresh process (eval: one timed forward of the first windows "
             "after a warm-up; decode: the prompts' first 32 tokens, 8 new tokens), the best of each batch marked; "
             "the peer's figures above were re-timed at it.\n")
    L.append("| mode | batch | OPENBLAS_NUM_THREADS | torch threads | OMP_WAIT_POLICY | tokens/s (eval) or ms a step "
             "(decode) | |")
    L.append("|---|---|---|---|---|---|---|")
    for mode in ("eval", "decode"):
        res = load_json(os.path.join(m, f"peer_search_{mode}.json"))
        for batch, best in sorted((res or {}).get("best", {}).items(), key=lambda kv: int(kv[0])):
            for s in res["settings"]:
                mark = "**best**" if all(s[k] == best[k] for k in best) else ""
                L.append(f"| {mode} | {batch} | {s['openblas_num_threads']} | {s['torch_threads']} | "
                         f"{s['omp_wait_policy'] or 'unset'} | {fmt_stats(s['points'].get(batch))} | {mark} |")
    L.append("")


def model_section(L, folder):
    """Appends the section; returns its figures (results.json's "model")."""
    m = os.path.join(folder, "model")
    cfg = load_json(os.path.join(m, "model", "config.json")) or {}
    ev = eval_figures(m)
    dec = {b: decode_figures(m, b) for b in (1, 16)}
    L.append("## Whole model: epmoe eval and generate against the PyTorch peer\n")
    L.append(f"A Mixtral-architecture checkpoint written by bench/peer_model.py (random FP32 weights, seed 0): "
             f"{cfg.get('num_hidden_layers', '?')} layers, d_model {cfg.get('hidden_size', '?')}, d_ff "
             f"{cfg.get('intermediate_size', '?')}, {cfg.get('num_local_experts', '?')} experts top-"
             f"{cfg.get('num_experts_per_tok', '?')}, {cfg.get('num_attention_heads', '?')} heads / "
             f"{cfg.get('num_key_value_heads', '?')} KV heads of {cfg.get('head_dim', '?')}, vocab "
             f"{cfg.get('vocab_size', '?')}, RoPE theta 1e6, no sliding window; token ids uniform over the vocabulary. "
             f"epmoe: {RANKS} ranks (launchers/mpirun.sh), 1 thread each, `compute.backend=auto`; each command run "
             "several times, a fresh process each. The peer: HF's MixtralForCausalLM forward written in Debian's "
             "torch (eager attention, repeat_kv, the MixtralSparseMoeBlock loop over experts, KV cache by torch.cat "
             "as DynamicCache) at its best thread setting, one timed pass a repetition in a fresh process after one "
             "warm-up forward, run right after epmoe's run of the same repetition.\n")
    L.append(f"**Eval** (`epmoe eval --ctx {ev['ctx']} --batch {(ev['peer_batch'] or 0) // RANKS}`: {ev['windows']} "
             f"windows of {ev['ctx']} tokens, {(ev['peer_batch'] or 0) // RANKS} windows a rank a step; the peer runs "
             f"{ev['peer_batch']} windows a forward, the same tokens a step). epmoe tokens/s excludes each run's "
             f"step 0 (first touch; the peer's warm-up) of its {ev['epmoe_steps_a_run']} steps; eval.json's figure "
             "over every step is beside it. Both include the loss over the logits.\n")
    L.append("| epmoe tokens/s | epmoe, every step | peer tokens/s | epmoe / peer | epmoe breakdown "
             "(embed/attention/gate/dispatch/experts/combine/lm_head) | peer breakdown (embed/attention/moe/lm_head) "
             "| peer setting |")
    L.append("|---|---|---|---|---|---|---|")
    L.append(f"| {fmt_stats(ev['epmoe_tokens_per_s'])} | {fmt_stats(ev['epmoe_tokens_per_s_all_steps'])} | "
             f"{fmt_stats(ev['peer_tokens_per_s'])} | **{fmt(ev['ratio'])}** | "
             f"{share_text(ev['epmoe_breakdown_share'], EPMOE_PARTS)} | "
             f"{share_text(ev['peer_breakdown_share'], PEER_PARTS)} | {setting_text(ev['peer_setting'])} |")
    L.append("")
    d1 = dec[1]
    L.append(f"**Decode** (`epmoe generate --max-new-tokens {d1['new_tokens']} --batch B` on prompts of "
             f"{d1['prompt_len']} tokens, greedy): ms a decode step (one token for each of the B prompts of every "
             f"rank; the peer decodes all {RANKS}B sequences in one batch), p50 of a run's steps, median (min-max) "
             "over runs; speedup = peer ms / epmoe ms. Breakdowns: ms a step, epmoe's the mean over ranks.\n")
    L.append("| prompts a rank | sequences | epmoe ms p50 | epmoe ms p99 | peer ms p50 | peer ms p99 | speedup | "
             "epmoe ms (embed/attention/gate/dispatch/experts/combine/lm_head) | peer ms (embed/attention/moe/lm_head) "
             "| prefill tokens/s epmoe / peer | peer setting |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for b, d in dec.items():
        L.append(f"| {b} | {d['sequences']} | {fmt_stats(d['epmoe_ms_p50'])} | {fmt_stats(d['epmoe_ms_p99'])} | "
                 f"{fmt_stats(d['peer_ms_p50'])} | {fmt_stats(d['peer_ms_p99'])} | **{fmt(d['speedup'])}** | "
                 f"{ms_text(d['epmoe_breakdown_ms'], EPMOE_PARTS)} | {ms_text(d['peer_breakdown_ms'], PEER_PARTS)} | "
                 f"{fmt(med(d['epmoe_prefill_tokens_per_s']))} / {fmt(med(d['peer_prefill_tokens_per_s']))} | "
                 f"{setting_text(d['peer_setting'])} |")
    L.append("")
    nll = ev["nll_checks"]
    worst = max((c["rel_diff"] for c in nll), default=None)
    L.append("Cross-checks: " + (f"mean NLL epmoe {nll[0]['epmoe_mean_nll']:.9g} against the peer's "
                                 f"{nll[0]['peer_mean_nll']:.9g} over {nll[0]['peer_tokens_scored']} targets, worst "
                                 f"relative difference over {len(nll)} runs {worst:.2g}" if nll else "no NLL check")
             + "; greedy ids " + "; ".join(
                 f"{d['sequences']} sequences x {d['new_tokens']}: "
                 + (("equal to the peer's in all " + str(len(d['id_checks'])) + " runs") if d["id_checks"] and
                    all(c["equal"] for c in d["id_checks"]) else
                    "**differ**: " + ", ".join(f"{c['sequences_differing']} sequences, first at (sequence, step) "
                                               f"{c['first_difference']}" for c in d["id_checks"] if not c["equal"])
                    if d["id_checks"] else "not checked")
                 for d in dec.values()) + ".\n")
    load = os.path.join(m, "loadavg.txt")
    if os.path.exists(load):
        L.append("Load average (1 min) when the stage began (before its own processes) and when it ended (its own "
                 "included): " + ", ".join(open(load).read().split()) + f", on {os.cpu_count()} CPUs. Other users' "
                 "work on the shared cores slows both sides (the repetitions alternate them) but not always alike.\n")
    search_rows(L, m)
    errors = ev["errors"] + [e for d in dec.values() for e in d["errors"]]
    if errors:
        L.append("Whole-model runs that failed: " + "; ".join(errors) + "\n")
    return {"eval": ev, "decode": {str(b): d for b, d in dec.items()}, "config": cfg}


def largest_parts(ours, peer, n=2):
    """The n largest parts of epmoe's breakdown (ms a step or shares) beside the peer's attention, moe, lm_head."""
    top = sorted(ours.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{k} {fmt(v)}" for k, v in top) + " against the peer's " + ", ".join(
        f"{k} {fmt(peer.get(k))}" for k in ("attention", "moe", "lm_head"))


def model_targets(L, figs):
    """The whole model's rows of the Targets table."""
    ev = figs["eval"]
    why = ""
    if ev["ratio"] is not None and ev["ratio"] < EVAL_TARGET:
        why = "largest shares of the time: " + largest_parts(
            {k: 100 * v for k, v in ev["epmoe_breakdown_share"].items()},
            {k: 100 * v for k, v in ev["peer_breakdown_share"].items()}) + " (%)"
    L.append(f"| whole-model eval tokens/s >= {EVAL_TARGET}x the FP32 PyTorch peer | {fmt(ev['ratio'])} | "
             f"{verdict(ev['ratio'], EVAL_TARGET)} | {why} |")
    for b, d in figs["decode"].items():
        why = ""
        if d["speedup"] is not None and d["speedup"] < DECODE_TARGET:
            why = "ms a step: " + largest_parts(d["epmoe_breakdown_ms"], d["peer_breakdown_ms"])
        L.append(f"| decode step >= {DECODE_TARGET}x faster than the peer ({b} prompt(s) a rank, p50) | "
                 f"{fmt(d['speedup'])} | {verdict(d['speedup'], DECODE_TARGET)} | {why} |")
    worst = max((c["rel_diff"] for c in ev["nll_checks"]), default=None)
    L.append(f"| eval mean NLL = the peer's within {NLL_TOLERANCE:g} relative | {fmt(worst)} | "
             f"{verdict(worst, NLL_TOLERANCE, False)} | |")
    for b, d in figs["decode"].items():
        ok = bool(d["id_checks"]) and all(c["equal"] for c in d["id_checks"])
        L.append(f"| greedy ids = the peer's ({d['sequences']} sequences) | {'equal' if ok else 'differ'} | "
                 f"{('met' if ok else '**not met**') if d['id_checks'] else 'not measured'} | |")


def main():
    standalone_main("model", "epmoe whole-model bench", model_section, model_targets)


if __name__ == "__main__":
    main()
