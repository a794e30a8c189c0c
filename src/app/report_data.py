"""What `epmoe report` (report.py) reads from results directories (results/README.md lists the fields): a run or
simulate directory's summary.json and metrics.jsonl, a compare directory's compare.csv and the run directories of
its pairs, and the table row of each run or pair. Standard library only."""
import csv
import json
import os
import statistics

# The headline figures: (report.csv column, report.md header, path in summary.json, compare.csv column).
HEADLINE = [
    ("tokens_per_s", "tokens/s", ("tokens_per_s",), "tokens_per_s"),
    ("step_p50_s", "step p50 (ms)", ("step_time_s", "p50"), "step_p50_s"),
    ("step_p99_s", "step p99 (ms)", ("step_time_s", "p99"), "step_p99_s"),
    ("rank_max_over_mean_last", "rank max/mean (last)", ("load", "rank_max_over_mean_last"), "rank_max_over_mean"),
    ("expert_max_over_mean_last", "expert max/mean (last)", ("load", "max_over_mean_last"), "expert_max_over_mean"),
    ("drop_rate", "drop rate", ("drop_rate",), "drop_rate"),
    ("changed_assignment_fraction", "changed assignments", ("routing", "changed_assignment_fraction"),
     "changed_assignment_fraction"),
    ("output_rel_l2", "output rel. L2", ("routing", "output_rel_l2"), "output_rel_l2"),
    ("joules_per_token", "J/token", ("energy", "joules_per_token"), "joules_per_token"),
]
# What each row ran: report.csv column and report.md header.
DESCRIPTIVE = [("energy_source", "energy source"), ("ranks", "ranks"), ("model", "model"), ("policy", "policy"),
               ("placement", "placement"), ("kernel", "kernel")]
CSV_COLUMNS = ["directory", "run", "kind", "repeats"] + [h[0] for h in HEADLINE] + [d[0] for d in DESCRIPTIVE]


class BadInput(Exception):
    """A directory or file that is not what epmoe wrote: one error line, exit 2."""


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise BadInput(f"{path}: cannot read it as JSON ({e})") from e


def read_metrics(path):
    """The lines of metrics.jsonl, in step order."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [json.loads(x) for x in f if x.strip()]
    except (OSError, ValueError) as e:
        raise BadInput(f"{path}: cannot read it as JSON lines ({e})") from e
    if not lines:
        raise BadInput(f"{path}: no lines")
    for line in lines:  # an older epmoe wrote neither: then each line was one step
        line.setdefault("steps_covered", 1)
        line.setdefault("first_step", line["step"] - line["steps_covered"] + 1)
    return lines


def dig(obj, keys):
    """obj[k0][k1]..., or None where a level is missing."""
    for k in keys:
        obj = obj.get(k) if isinstance(obj, dict) else None
    return obj


def read_run(path, name):
    """A run (or simulate) directory: its summary.json and metrics.jsonl."""
    return {"path": path, "name": name, "summary": read_json(os.path.join(path, "summary.json")),
            "lines": read_metrics(os.path.join(path, "metrics.jsonl"))}


def number(text):
    """A compare.csv cell as a float, None when empty."""
    return float(text) if text not in (None, "") else None


def read_compare(path, name):
    """A compare directory: compare.csv's rows, each with the run directories of its repeats."""
    try:
        with open(os.path.join(path, "compare.csv"), encoding="utf-8", newline="") as f:
            table = list(csv.DictReader(f))
    except OSError as e:
        raise BadInput(f"{path}/compare.csv: cannot read it ({e})") from e
    if not table or "pair" not in table[0]:
        raise BadInput(f"{path}/compare.csv: no pairs (not written by epmoe compare?)")
    pairs = []
    for row in table:
        stem = f"{row['policy']}-{row['placement']}"
        runs = [read_run(os.path.join(path, f"{stem}-r{i}"), f"{name}-{stem}") for i in range(int(row["repeats"]))
                if os.path.isfile(os.path.join(path, f"{stem}-r{i}", "summary.json"))]
        if not runs:
            raise BadInput(f"{path}/{stem}-r0: no summary.json for the pair {row['pair']} of compare.csv")
        pairs.append({"row": row, "runs": runs})
    return {"path": path, "name": name, "pairs": pairs}


def model_label(m):
    """summary.json's model block in a few words."""
    if not m:
        return ""
    shape = f"L={m.get('num_layers')} d={m.get('d_model')} ff={m.get('d_ff')} E={m.get('num_experts')} " \
            f"k={m.get('top_k')}"
    if m.get("source") == "checkpoint":
        return f"{m.get('family')} {os.path.basename(str(m.get('path', '')).rstrip('/'))} {shape}"
    return f"synthetic {shape}"


def energy_label(summary):
    """Where the run's joules came from, as the report says it."""
    energy = summary.get("energy") or {}
    source = energy.get("source")
    if energy.get("joules_per_token") is None:
        return f"not measured (source {source})"
    if source == "estimated":
        return "estimated: a model"
    return f"{source} (measured)"


def describe(summary):
    """The descriptive columns of a run."""
    return {"energy_source": energy_label(summary), "ranks": summary.get("ranks"),
            "model": model_label(summary.get("model")), "policy": dig(summary, ("routing", "policy")),
            "placement": summary.get("placement"), "kernel": dig(summary, ("compute", "kernel"))}


def run_row(run, directory):
    s = run["summary"]
    row = {"directory": directory, "run": run["name"], "kind": "simulated run" if s.get("simulated") else "run",
           "repeats": 1}
    row.update({col: dig(s, keys) for col, _, keys, _ in HEADLINE})
    row.update(describe(s))
    return row


def pair_row(pair, directory, name):
    """A compare pair: compare.csv's medians where it has the column, else the median over the repeats' summaries
    (whole runs, warm-up included; listed in the row's `from_summary`)."""
    csv_row, runs = pair["row"], pair["runs"]
    row = {"directory": directory, "run": f"{name}: {csv_row['pair']}", "kind": "compare pair",
           "repeats": int(csv_row["repeats"]), "from_summary": []}
    for col, _, keys, csv_col in HEADLINE:
        if csv_col in csv_row:
            row[col] = number(csv_row[csv_col])
            continue
        values = [dig(r["summary"], keys) for r in runs]
        row[col] = statistics.median(values) if None not in values else None
        row["from_summary"].append(col)
    row.update(describe(runs[0]["summary"]))
    row["policy"], row["placement"] = csv_row["policy"], csv_row["placement"]
    return row


def read_sources(dirs):
    """Each DIR as a run or compare source, with a name for its figures that is unique in the report."""
    sources, names = [], set()
    for d in dirs:
        base = os.path.basename(os.path.abspath(d)) or "results"
        name, i = base, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.add(name)
        if os.path.isfile(os.path.join(d, "summary.json")):
            sources.append({"kind": "run", "run": read_run(d, name), "path": d, "name": name})
        elif os.path.isfile(os.path.join(d, "compare.csv")):
            sources.append({"kind": "compare", **read_compare(d, name)})
        else:
            raise BadInput(f"{d}: not a results directory (no summary.json or compare.csv)")
    return sources
