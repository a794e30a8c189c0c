"""`epmoe report`: figures (PNG, matplotlib) and a table across results directories (run, compare, simulate).

    report.py --out OUT DIR...      (`epmoe report` checks the arguments, then runs this)

Writes into OUT: per run directory (for a compare directory, the first repeat of each pair) <name>-load.png,
<name>-steps.png, <name>-time.png and <name>-energy.png; per compare directory <name>-frontier.png; then
report.csv, report.html (report.md's content, the PNGs embedded) and report.md. The files read:
report_data.py; the figures: report_figures.py. Bad input: one line `epmoe: error: ...` on stderr, exit 2."""
import argparse
import base64
import csv
import datetime
import html
import os
import re
import sys

import report_data as data
import report_figures as figs
from report_data import dig


def steps_label(line):
    return f"step {line['step']}" if line["first_step"] == line["step"] else f"steps {line['first_step']}-{line['step']}"


def energy_title(s):
    """The energy source as a figure title says it: measured, a model (with its coefficients) or not measured."""
    label = data.energy_label(s)
    est = dig(s, ("energy", "estimate"))
    if label.startswith("estimated") and est:
        label += (f" ({est['pj_per_flop']:g} pJ/FLOP, {est['pj_per_byte']:g} pJ/byte, "
                  f"{est['idle_w_per_core']:g} W a core idle), not a measurement")
    return label


def line_joules_per_token(line):
    joules = dig(line, ("energy", "joules"))
    return joules / line["tokens"] if joules is not None and line["tokens"] else None


def run_figures(run, out):
    """Draws the four figures of one run directory into out; returns [(file, caption)]."""
    s, lines, name = run["summary"], run["lines"], run["name"]
    simulated = bool(s.get("simulated"))
    first, last = lines[0], lines[-1]
    kinds = [layer.get("kind", "moe") for layer in first["layers"]]
    start = int(str(dig(s, ("model", "layers")) or "0").split("-")[0])
    names = [f"{start + i}" + (" (dense)" if k == "dense" else "") for i, k in enumerate(kinds)]
    files = {k: f"{name}-{k}.png" for k in ("load", "steps", "time", "energy")}
    figs.load_heatmap([x["expert_load"] for x in first["layers"]], [x["expert_load"] for x in last["layers"]],
                      kinds, names, (f"first metrics line ({steps_label(first)})",
                                     f"last metrics line ({steps_label(last)})"),
                      f"{name}: expert load per layer", os.path.join(out, files["load"]))
    per_line = [(x["first_step"], x["step"], x["step_time_s"] / x["steps_covered"], x["tokens_per_s"]) for x in lines]
    figs.steps_figure(per_line, simulated, f"{name}: step time and tokens/s over steps (metrics.jsonl)",
                      os.path.join(out, files["steps"]), dig(s, ("step_time_s", "p50")), dig(s, ("step_time_s", "p99")))
    figs.breakdown_figure(s.get("time_breakdown_s") or {}, simulated,
                          f"{name}: where the time goes (summary.json time_breakdown_s)", os.path.join(out, files["time"]))
    figs.energy_figure([(x["first_step"], x["step"], line_joules_per_token(x)) for x in lines], dig(s, ("energy", "joules_per_token")),
                       energy_title(s), f"{name}: energy per token", os.path.join(out, files["energy"]),
                       dig(s, ("energy", "reason")) or "")
    sim = " (simulated seconds)" if simulated else ""
    return [(files["load"], "expert load per layer, first and last metrics line"),
            (files["steps"], f"step time and tokens/s over steps{sim}"),
            (files["time"], f"time breakdown{sim}"), (files["energy"], f"J/token, source: {data.energy_label(s)}")]


def run_section(run, path, out, level="h2"):
    s = run["summary"]
    facts = (f"`{path}`: {s.get('ranks')} rank(s), {s.get('steps')} step(s), {s.get('tokens_total')} tokens; "
             f"model {data.model_label(s.get('model'))}; policy {dig(s, ('routing', 'policy'))}, placement "
             f"{s.get('placement')}, kernel {dig(s, ('compute', 'kernel'))}; energy: {energy_title(s)}.")
    if s.get("simulated"):
        facts += " Simulated (SimGrid SMPI): every time is virtual."
    blocks = [(level, f"Run {run['name']}"), ("p", facts)]
    return blocks + [("img", f, c) for f, c in run_figures(run, out)]


def spread(row, column):
    """(median, min, max) of a compare.csv figure; None where the column is missing or empty."""
    return tuple(data.number(row.get(column + suffix)) for suffix in ("", "_min", "_max"))


def compare_section(src, out):
    name = src["name"]
    points = [{"label": p["row"]["pair"], "changed": spread(p["row"], "changed_assignment_fraction"),
               "rel_l2": spread(p["row"], "output_rel_l2"), "rank": spread(p["row"], "rank_max_over_mean"),
               "tokens_per_s": spread(p["row"], "tokens_per_s")} for p in src["pairs"]]
    repeats = src["pairs"][0]["row"]["repeats"]
    file = f"{name}-frontier.png"
    optimal = figs.frontier_figure(points, f"{name}: gain vs fidelity, one point per pair (median over {repeats} "
                                   "repeat(s), bars min-max; compare.csv)", os.path.join(out, file))
    blocks = [("h2", f"Compare {name}"),
              ("p", f"`{src['path']}`: {len(points)} pair(s), {repeats} repeat(s) each; compare.md has every figure "
                    "with its range and the ratio to the baseline. Pareto-optimal pairs (by median: no other pair is as "
                    "good on both axes and better on one):"),
              ("ul", [f"{panel}: {', '.join(labels) or 'none'}" for panel, labels in optimal.items()]),
              ("img", file, "gain vs fidelity frontier")]
    for pair in src["pairs"]:
        run = pair["runs"][0]
        blocks += run_section(run, os.path.join(src["path"], os.path.basename(run["path"])), out, "h3")
    return blocks


def cell(row, column):
    """A report.md cell: steps in ms, J/token with its source, n/a where not measured."""
    v = row.get(column)
    if column == "joules_per_token":
        return row["energy_source"] if v is None else f"{v:.3g} ({row['energy_source']})"
    if v is None:
        return "n/a"
    if isinstance(v, float):
        v = v * 1e3 if column.startswith("step_") else v
        return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    return str(v)


def table_blocks(rows):
    header = ["run", "kind", "repeats"] + [h[1] for h in data.HEADLINE if h[0] != "joules_per_token"] + \
             ["J/token (source)"] + [d[1] for d in data.DESCRIPTIVE if d[0] != "energy_source"]
    columns = ["run", "kind", "repeats"] + [h[0] for h in data.HEADLINE if h[0] != "joules_per_token"] + \
              ["joules_per_token"] + [d[0] for d in data.DESCRIPTIVE if d[0] != "energy_source"]
    notes = ["tokens/s: tokens over the summed step times; step p50/p99: step times in ms (simulated ms for a "
             "simulated run); rank and expert max/mean: the busiest rank (rows run) and expert over the mean, last "
             "coordinator round, mean over MoE layers; changed assignments and output rel. L2: the routing fidelity "
             "cost (0 = what plain top-k does).",
             "J/token: `estimated: a model` is joules from a model of FLOPs, bytes and time (energy.estimate.*), not a "
             "measurement; `not measured`: no energy source was read; rapl and hwmon are measured.",
             "A compare pair's figures are compare.csv's medians over its repeats, after the warm-up steps; the "
             "frontier figure shows their min-max ranges."]
    derived = sorted({c for r in rows for c in r.get("from_summary", [])})
    if derived:
        notes.append(f"Columns compare.csv does not have ({', '.join(derived)}): for a pair, the median of the "
                     "repeats' summary.json figures, whole runs (warm-up steps included).")
    return [("table", header, [[cell(r, c) for c in columns] for r in rows]), ("ul", notes)]


def inline_html(text):
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def render(blocks, out, as_html):
    """The blocks as Markdown, or as HTML with each PNG embedded (a data: URI, so the file stands alone)."""
    parts = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            n = int(kind[1])
            parts.append(f"<{kind}>{inline_html(b[1])}</{kind}>" if as_html else "#" * n + " " + b[1])
        elif kind == "p":
            parts.append(f"<p>{inline_html(b[1])}</p>" if as_html else b[1])
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{inline_html(i)}</li>" for i in b[1]) + "</ul>" if as_html
                         else "\n".join(f"- {i}" for i in b[1]))
        elif kind == "img":
            if as_html:
                with open(os.path.join(out, b[1]), "rb") as f:
                    uri = "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")
                parts.append(f'<figure><img src="{uri}" alt="{html.escape(b[2])}"><figcaption>'
                             f"{html.escape(b[2])} ({html.escape(b[1])})</figcaption></figure>")
            else:
                parts.append(f"![{b[2]}]({b[1]})")
        elif kind == "table":
            parts.append(render_table(b[1], b[2], as_html))
    return "\n\n".join(parts) + "\n"


def render_table(header, rows, as_html):
    if as_html:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><tr>{head}</tr>{body}</table>"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows])


HTML_HEAD = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>epmoe report</title><style>"
             "body{font-family:sans-serif;max-width:1300px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:3px 6px}"
             "td{text-align:right}img{max-width:100%}figure{margin:1em 0}</style></head><body>\n")


def write_file(path, text):
    """Writes through path.tmp and a rename: a reader never sees half a file."""
    with open(path + ".tmp", "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def write_documents(out, rows, blocks, dirs):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    head = [("h1", "epmoe report"),
            ("p", f"Written {stamp} by `epmoe report` from {', '.join(f'`{d}`' for d in dirs)}."),
            ("h2", "Headline figures"), ("p", "One row per run directory; for a compare directory, one row per pair "
                                              "(report.csv has the same table, numbers in seconds).")]
    blocks = head + table_blocks(rows) + blocks
    with open(os.path.join(out, "report.csv.tmp"), "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, data.CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    os.replace(os.path.join(out, "report.csv.tmp"), os.path.join(out, "report.csv"))
    write_file(os.path.join(out, "report.html"), HTML_HEAD + render(blocks, out, True) + "</body></html>\n")
    write_file(os.path.join(out, "report.md"), render(blocks, out, False))


def main(argv):
    parser = argparse.ArgumentParser(prog="report.py", description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", metavar="DIR")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    sources = data.read_sources(args.dirs)
    os.makedirs(args.out, exist_ok=True)
    rows, blocks = [], []
    for src in sources:
        try:
            if src["kind"] == "run":
                rows.append(data.run_row(src["run"], src["path"]))
                blocks += run_section(src["run"], src["path"], args.out)
            else:
                rows += [data.pair_row(p, src["path"], src["name"]) for p in src["pairs"]]
                blocks += compare_section(src, args.out)
        except (KeyError, TypeError, ValueError) as e:  # a file that parsed but lacks what epmoe writes
            raise data.BadInput(f"{src['path']}: not what epmoe writes ({type(e).__name__}: {e}); "
                                "results/README.md lists the fields") from e
    write_documents(args.out, rows, blocks, args.dirs)
    print(f"epmoe report: {len(rows)} row(s); report.md, report.html, report.csv and the figures in {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except data.BadInput as e:
        print(f"epmoe: error: {e}", file=sys.stderr)
        sys.exit(2)
