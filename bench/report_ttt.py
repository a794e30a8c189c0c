#!/usr/bin/python3
"""The test-time routing section: `--policy ttt` against aux_free and prev_batch (epmoe compare --mode eval) on a
model `epmoe train` made, over a stream whose routing drifts, and ttt's energy term alone at weight 10 against 0.
Run by bench/run.sh --only ttt:

    report_ttt.py FOLDER --markdown TTT.md --json ttt.json [--quick 1]

FOLDER/ttt holds the stage: model/, drift.bin, policies/ (compare: none, ttt with policy.ttt.max_delta_ppl=0.02,
aux_free, prev_batch), defaults/ (none, ttt at its defaults), energy10/ and energy0/ (none, ttt with
policy.ttt.balance=0 and energy 10 or 0), each with compare.csv and the runs' directories (eval.json, summary.json)."""
import csv
import glob
import json
import os

from report_util import fmt, standalone_main

PAIRS = ("none/contiguous", "ttt/contiguous", "aux_free/contiguous", "prev_batch/contiguous")
COLUMNS = ("tokens_per_s", "rank_max_over_mean", "expert_max_over_mean", "rank_max_over_mean_steps",
           "expert_max_over_mean_steps", "joules_per_token", "ppl", "changed_assignment_fraction")


def compare_rows(folder):
    """{pair: {column: {median, min, max}}} of a compare directory's compare.csv."""
    path = os.path.join(folder, "compare.csv")
    if not os.path.exists(path):
        return {}
    out = {}
    for row in csv.DictReader(open(path)):
        cell = lambda c, s="": float(row[c + s]) if row.get(c + s) not in (None, "") else None
        out[row["pair"]] = {c: {"median": cell(c), "min": cell(c, "_min"), "max": cell(c, "_max")} for c in COLUMNS}
    return out


def ttt_runs(folder):
    """Every ttt repeat's eval.json "ttt" (held-out checks, shrinks) and its energy source."""
    runs = []
    for d in sorted(glob.glob(os.path.join(folder, "ttt-contiguous-r*"))):
        e = json.load(open(os.path.join(d, "eval.json")))
        runs.append({"shrinks": e["ttt"]["shrinks"], "checks": e["ttt"]["checks"],
                     "energy_source": e["energy"]["source"]})
    return runs


def add_delta_ppl(rows):
    """Each pair's ppl relative to none's: delta_ppl_rel."""
    base = rows.get("none/contiguous", {}).get("ppl", {}).get("median")
    for row in rows.values():
        ppl = row["ppl"]["median"]
        row["delta_ppl_rel"] = ppl / base - 1 if ppl is not None and base else None


def figures(folder):
    t = os.path.join(folder, "ttt")
    figs = {"runs": {}}
    for name in ("policies", "defaults", "energy10", "energy0"):
        figs[name] = compare_rows(os.path.join(t, name))
        add_delta_ppl(figs[name])
        figs["runs"][name] = ttt_runs(os.path.join(t, name))
    figs["energy_source"] = figs["runs"]["policies"][0]["energy_source"] if figs["runs"]["policies"] else None
    return figs


def holdout_text(runs, budget):
    """The held-out checks of a compare's ttt repeats, in words."""
    checks = [c["delta"] for r in runs for c in r["checks"]]
    worst = max(checks) if checks else None
    return (f"held-out checks every 8 steps, budget {budget}: largest delta {fmt(worst)} (each check over the "
            f"budget shrank the correction), shrinks per repeat {[r['shrinks'] for r in runs]}")


def cell(row, column, scale=1.0):
    s = row.get(column) if row else None
    if not s or s["median"] is None:
        return "n/a"
    return f"{fmt(s['median'] * scale)} ({fmt(s['min'] * scale)}-{fmt(s['max'] * scale)})"


def policy_rows(L, rows, pairs):
    for pair in pairs:
        row = rows.get(pair)
        if row:
            d = row["delta_ppl_rel"]
            L.append(f"| {pair} | {cell(row, 'tokens_per_s')} | {cell(row, 'rank_max_over_mean_steps')} | "
                     f"{cell(row, 'rank_max_over_mean')} | {cell(row, 'expert_max_over_mean_steps')} | "
                     f"{cell(row, 'joules_per_token', 1e6)} | {cell(row, 'ppl')} | "
                     f"{'n/a' if d is None else f'{100 * d:+.2f} %'} | {cell(row, 'changed_assignment_fraction')} |")


def ttt_section(L, folder):
    f = figures(folder)
    head = ["| pair | tokens/s | rank max/mean (steps) | rank max/mean (last) | expert max/mean (steps) | "
            "J/token (x1e-6) | ppl | delta ppl | changed assignments |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    L += ["## Test-time routing on a drifting stream\n",
          "`epmoe compare --mode eval` at 2 ranks (medians over the repeats, min-max), on a byte-level model `epmoe "
          "train` made without a load-balancing loss, over fortunes and C++ sources alternating every 4096 bytes. "
          "Rank and expert max/mean: means over layers, of every measured step (steps) or the last. ppl over every "
          "window; delta: against "
          f"`none`. J/token: energy source `{f['energy_source']}`.\n",
          "ttt with a perplexity budget of 2 % (`--set policy.ttt.max_delta_ppl=0.02`), against the rule-based "
          "policies:\n"] + head
    policy_rows(L, f["policies"], PAIRS)
    L += ["", f"ttt's {holdout_text(f['runs']['policies'], '2 %')}.\n", "ttt at its defaults (budget 1 %):\n"] + head
    policy_rows(L, f["defaults"], PAIRS[:2])
    L += ["", f"ttt's {holdout_text(f['runs']['defaults'], '1 %')}.\n",
          "The energy term alone (`policy.ttt.balance=0`), weight 10 and 0, each run against `none`:\n",
          "| energy weight | ttt J/token (x1e-6) | none J/token (x1e-6) | ttt rank max/mean (steps) | ttt tokens/s |",
          "|---:|---:|---:|---:|---:|"]
    for e in ("10", "0"):
        rows = f[f"energy{e}"]
        L.append(f"| {e} | {cell(rows.get('ttt/contiguous'), 'joules_per_token', 1e6)} | "
                 f"{cell(rows.get('none/contiguous'), 'joules_per_token', 1e6)} | "
                 f"{cell(rows.get('ttt/contiguous'), 'rank_max_over_mean_steps')} | "
                 f"{cell(rows.get('ttt/contiguous'), 'tokens_per_s')} |")
    L.append("")
    return f


def median(rows, pair, column):
    s = rows.get(pair, {}).get(column)
    return None if not s else s["median"]


def ttt_targets(L, f):
    p = f["policies"]
    for col, what in (("rank_max_over_mean_steps", "mean over steps"), ("rank_max_over_mean", "last step")):
        ttt, aux = median(p, "ttt/contiguous", col), median(p, "aux_free/contiguous", col)
        ok = ttt is not None and aux is not None and ttt <= aux
        L.append(f"| ttt (budget 2 %) rank max/mean <= aux_free's ({what}) | {fmt(ttt)} vs {fmt(aux)} | "
                 f"{'met' if ok else 'not met'} | |")
    d, da = (p.get(k, {}).get("delta_ppl_rel") for k in ("ttt/contiguous", "aux_free/contiguous"))
    ok = d is not None and d <= 0.02
    L.append(f"| ttt's perplexity over the whole stream within its 2 % budget | {fmt(d)} (aux_free {fmt(da)}) | "
             f"{'met' if ok else 'not met'} | |")
    e10, e0 = (median(f[f"energy{e}"], "ttt/contiguous", "joules_per_token") for e in ("10", "0"))
    ok = e10 is not None and e0 is not None and e10 < e0
    L.append(f"| energy term lowers J/token ({f['energy_source']}) | {fmt(e10)} vs {fmt(e0)} | "
             f"{'met' if ok else 'not met'} | |")


def main():
    standalone_main("ttt", "epmoe test-time routing bench", ttt_section, ttt_targets)


if __name__ == "__main__":
    main()
