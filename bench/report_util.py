"""Formatting and statistics shared by report.py and report_layer.py."""
import argparse
import json
import os
import re
import statistics


def cpu_name(folder=None):
    """The CPU a run came from: FOLDER/lscpu.txt's model name where the run saved one, else this machine's."""
    paths = ([os.path.join(folder, "lscpu.txt")] if folder else []) + ["/proc/cpuinfo"]
    for path in paths:
        if os.path.exists(path):
            m = re.search(r"^(?:Model name|model name)\s*:\s*(.+)$", open(path).read(), re.M)
            if m:
                return m.group(1).strip()
    return "unknown CPU"


def stats(values):
    values = sorted(values)
    return {"median": statistics.median(values), "min": values[0], "max": values[-1], "n": len(values)}


def load_kernels(path):
    """Google Benchmark JSON -> {run name: {metric: stats}} over the repetitions (aggregates skipped)."""
    if not os.path.exists(path):
        return {}
    runs = {}
    for b in json.load(open(path))["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        name = b["run_name"].split("/repeats:")[0].replace("/real_time", "")
        entry = runs.setdefault(name, {"label": b.get("label", ""), "error": b.get("error_message"), "values": {}})
        if b.get("error_occurred"):
            entry["error"] = b.get("error_message")
            continue
        for key in ("GFLOPS", "bytes_per_second", "items_per_second", "real_time", "wrong", "rel_err"):
            if key in b:
                entry["values"].setdefault(key, []).append(b[key])
    for entry in runs.values():
        entry["stats"] = {k: stats(v) for k, v in entry.pop("values").items()}
    return runs


def metric(runs, name, key):
    entry = runs.get(name)
    if not entry or key not in entry["stats"]:
        return None
    return entry["stats"][key]


def med(s):
    return None if s is None else s["median"]


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def fmt(value, digits=3):
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def fmt_stats(s, scale=1.0, digits=3):
    if s is None:
        return "n/a"
    return f"{fmt(s['median'] * scale, digits)} ({fmt(s['min'] * scale, digits)}-{fmt(s['max'] * scale, digits)})"


def verdict(value, target, higher_is_better=True):
    if value is None:
        return "not measured"
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "**not met**"


def standalone_main(stage, title, section, targets):
    """main() of a stage's report run alone (bench/run.sh --only STAGE): FOLDER --markdown F --json F [--quick 1];
    writes the machine line, section(L, folder)'s text and targets(L, figures)'s rows of the Targets table."""
    p = argparse.ArgumentParser(description=f"the {stage} section of bench/RESULTS.md, alone")
    p.add_argument("folder")
    p.add_argument("--quick", type=int, default=0)
    p.add_argument("--markdown", required=True)
    p.add_argument("--json", required=True)
    a = p.parse_args()
    from report import machine_line  # report.py imports the stage modules: import it here, not at the top
    info = os.path.join(a.folder, "info.json")
    L = [f"# {title} (`bench/run.sh --only {stage}`{', --quick: not for quoting' if a.quick else ''})\n",
         machine_line(a.folder, json.load(open(info)) if os.path.exists(info) else {}) + "\n"]
    figs = section(L, a.folder)
    L += ["## Targets\n", "| target | measured | verdict | limit in the way (measured here) |", "|---|---|---|---|"]
    targets(L, figs)
    open(a.markdown, "w").write("\n".join(L) + "\n")
    json.dump(figs, open(a.json, "w"), indent=1, default=str)
