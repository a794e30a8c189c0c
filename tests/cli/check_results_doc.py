#!/usr/bin/python3
"""Checks results/README.md against results directories epmoe wrote, both ways: every field of summary.json,
metrics.jsonl (train_log.jsonl for a train directory) is documented in its table, every documented field (but
those marked "only ...") is written, and metrics.csv has exactly the columns the README's rule gives for the
metrics lines.

    check_results_doc.py README.md DIR...     prints one line per difference; exit 1 if any
"""
import csv
import json
import re
import sys


def paths(value, prefix=""):
    """Leaf paths: a.b for objects, a[] for lists of objects, a for lists of scalars (and scalars)."""
    out = set()
    if isinstance(value, dict):
        for k, v in value.items():
            out |= paths(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(value, list) and value and all(isinstance(e, dict) for e in value):
        for e in value:
            out |= paths(e, prefix + "[]")
    else:
        out.add(prefix)
    return out


def documented(readme, section):
    """{path: required} from the first column of the table under `## \\`section\\``; `.x` continues the last
    full path's parent, `a.*` documents every path under a."""
    text = readme.split(f"## `{section}`", 1)[1].split("\n## ", 1)[0]
    out = {}
    for row in text.splitlines():
        if not row.startswith("| `"):
            continue
        first, rest = row.split("|")[1], "|".join(row.split("|")[2:])
        required = "only " not in rest
        parent = ""
        for token in re.findall(r"`([^`]+)`", first):
            if token.startswith("."):
                token = parent + token
            parent = token.rsplit(".", 1)[0] if "." in token else ""
            out[token] = required
    return out


def covered(path, docs):
    return path in docs or any(d.endswith(".*") and path.startswith(d[:-1]) for d in docs)


def csv_columns(line):
    """The README's rule for metrics.csv: scalar fields of the line, per-rank fields as the rank's."""
    cols = ["rank", "rank_rows"]
    for p in sorted(paths(line)):
        if p.startswith(("layers", "biases", "energy.hosts", "ttt.rank_energy_cost")):
            continue
        cols.append(p)
    return sorted(cols)


def main():
    readme = open(sys.argv[1]).read()
    problems, seen = [], {"summary.json": set(), "metrics.jsonl": set()}
    for folder in sys.argv[2:]:
        seen["summary.json"] |= paths(json.load(open(f"{folder}/summary.json")))
        for own in ("eval.json", "generated.jsonl"):  # the whole-model commands' own files, where written
            try:
                values = [json.loads(l) for l in open(f"{folder}/{own}")] if own.endswith("l") else \
                    [json.load(open(f"{folder}/{own}"))]
            except FileNotFoundError:
                continue
            for v in values:
                seen.setdefault(own, set()).update(paths(v))
        try:  # epmoe train's own log, where written (a train directory has no metrics.jsonl)
            for l in open(f"{folder}/train_log.jsonl"):
                seen.setdefault("train_log.jsonl", set()).update(paths(json.loads(l)))
            continue
        except FileNotFoundError:
            pass
        lines = [json.loads(l) for l in open(f"{folder}/metrics.jsonl")]
        for line in lines:
            seen["metrics.jsonl"] |= paths(line)
        header = next(csv.reader(open(f"{folder}/metrics.csv")))
        if sorted(header) != csv_columns(lines[0]):
            problems.append(f"{folder}/metrics.csv: columns {sorted(header)} != {csv_columns(lines[0])}")
        rows = list(csv.DictReader(open(f"{folder}/metrics.csv")))
        if len(rows) != len(lines) * len(lines[0]["per_rank"]["tokens"]):
            problems.append(f"{folder}/metrics.csv: {len(rows)} rows, not one per line and rank")
    for section, written in seen.items():
        docs = documented(readme, section)
        for p in sorted(written):
            if not covered(p, docs):
                problems.append(f"{section}: {p} is written but not in results/README.md")
        for d, required in sorted(docs.items()):
            hit = any(p == d or (d.endswith(".*") and p.startswith(d[:-1])) for p in written)
            if required and not hit:
                problems.append(f"{section}: {d} is in results/README.md but was not written")
    for p in problems:
        print(p)
    print(f"check_results_doc: {sum(map(len, seen.values()))} fields, {len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
