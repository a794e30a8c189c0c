#!/usr/bin/env bash
# `epmoe report` on a run and a compare directory: report.md, report.html and report.csv, every PNG report.md names
# a real PNG (signature and IHDR size), one report.csv row per run and per pair with the headline columns and the
# figures of summary.json and compare.csv, J/token with its source; the default and refused report folders; the
# script found beside the binary, its exit code passed on; bad input exits 2 with one error line.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
read -r -a mpiexec <<<"$MPIEXEC"
small=(--set model.d_model=48 --set model.d_ff=80 --set model.num_layers=2 --tokens-per-rank 32 --steps 3 -q)

# check_report OUT RUN CMP: the checks of one report folder, in Python with the standard library only.
check_report() {
    if python3 - "$@" <<'EOF'; then pass "  report folder $1 checks out"; else fail_check "report folder $1"; fi
import csv, json, os, re, struct, sys
out, run, cmp = sys.argv[1:4]
bad = []
for name in ("report.md", "report.html", "report.csv"):
    if not os.path.isfile(os.path.join(out, name)):
        bad.append(f"no {name}")
md = open(os.path.join(out, "report.md")).read()
pngs = re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", md)
pairs = list(csv.DictReader(open(os.path.join(cmp, "compare.csv"))))
if len(pngs) != 4 * (1 + len(pairs)) + 1 or not any(p.endswith("-frontier.png") for p in pngs):
    bad.append(f"report.md names {len(pngs)} PNGs, expected 4 per run and pair and one frontier")
for png in pngs:
    data = open(os.path.join(out, png), "rb").read(32) if os.path.isfile(os.path.join(out, png)) else b""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        bad.append(f"{png}: not a PNG")
        continue
    width, height = struct.unpack(">II", data[16:24])
    if width <= 100 or height <= 100:
        bad.append(f"{png}: {width} x {height}")
html = open(os.path.join(out, "report.html")).read()
if html.count('<img src="data:image/png;base64,') != len(pngs):
    bad.append("report.html does not embed every PNG of report.md")
rows = list(csv.DictReader(open(os.path.join(out, "report.csv"))))
headline = ["run", "tokens_per_s", "step_p50_s", "step_p99_s", "rank_max_over_mean_last", "expert_max_over_mean_last",
            "drop_rate", "changed_assignment_fraction", "output_rel_l2", "joules_per_token", "energy_source", "ranks",
            "model", "policy", "placement", "kernel"]
missing = [c for c in headline if c not in (rows[0] if rows else {})]
if len(rows) != 1 + len(pairs) or missing:
    bad.append(f"report.csv: {len(rows)} rows (expected {1 + len(pairs)}), missing columns {missing}")
else:
    s = json.load(open(os.path.join(run, "summary.json")))
    if abs(float(rows[0]["tokens_per_s"]) - s["tokens_per_s"]) > 1e-6 * s["tokens_per_s"]:
        bad.append("the run's tokens/s is not summary.json's")
    if rows[0]["energy_source"] != "estimated: a model" or rows[0]["ranks"] != "2":
        bad.append(f"run row: energy source {rows[0]['energy_source']!r}, ranks {rows[0]['ranks']}")
    for row, pair in zip(rows[1:], pairs):
        if (row["policy"], row["placement"]) != (pair["policy"], pair["placement"]) or \
                float(row["tokens_per_s"]) != float(pair["tokens_per_s"]):
            bad.append(f"pair row {row['run']}: not compare.csv's {pair['pair']}")
        if row["joules_per_token"] != "" or not row["energy_source"].startswith("not measured"):
            bad.append(f"pair row {row['run']}: J/token {row['joules_per_token']!r} ({row['energy_source']})")
for b in bad:
    print("     " + b)
sys.exit(1 if bad else 0)
EOF
}

run=$cli_tmp/run
cmp=$cli_tmp/cmp
out=$cli_tmp/report
expect_exit 0 "${mpiexec[@]}" -n 2 "$EPMOE" run "${small[@]}" --energy-source estimated --out "$run"
expect_exit 0 "${mpiexec[@]}" -n 2 "$EPMOE" compare "${small[@]}" --repeats 2 --warmup 1 --energy-source none \
    --out "$cmp"
CLI_TIMEOUT=240 expect_exit 0 "$EPMOE" report "$run" "$cmp" --out "$out"
check_report "$out" "$run" "$cmp"
expect_stdout_has "report.md, report.html, report.csv"

# One DIR: report/ inside it. A report folder that holds files is refused, then replaced with --overwrite.
CLI_TIMEOUT=240 expect_exit 0 "$EPMOE" report "$run"
if [ -s "$run/report/report.md" ] && [ -s "$run/report/run-load.png" ]; then pass "  default: DIR/report/"; else
    fail_check "no report in $run/report"; fi
expect_exit 2 "$EPMOE" report "$run" "$cmp" --out "$out"
expect_one_error_line
expect_stderr_has "is not empty"
CLI_TIMEOUT=240 expect_exit 0 "$EPMOE" report "$run" "$cmp" --out "$out" --overwrite
check_report "$out" "$run" "$cmp"

# Bad input: one error line naming what is wrong, exit 2, no report folder.
mkdir -p "$cli_tmp/empty"
expect_exit 2 "$EPMOE" report "$cli_tmp/missing" --out "$cli_tmp/r1"
expect_one_error_line
expect_stderr_has "$cli_tmp/missing: no such directory"
expect_exit 2 "$EPMOE" report "$run" "$cli_tmp/empty" --out "$cli_tmp/r1"
expect_one_error_line
expect_stderr_has "$cli_tmp/empty: not a results directory"
expect_exit 2 "$EPMOE" report --out "$cli_tmp/r1"
expect_one_error_line
expect_exit 2 "$EPMOE" report "$run" --bogus
expect_one_error_line
mkdir -p "$cli_tmp/cut" && cp "$run"/* "$cli_tmp/cut/" 2>/dev/null
head -c 200 "$run/summary.json" >"$cli_tmp/cut/summary.json"
expect_exit 2 "$EPMOE" report "$cli_tmp/cut" --out "$cli_tmp/r2"
expect_one_error_line
expect_stderr_has "$cli_tmp/cut/summary.json: cannot read it as JSON"
sed -i 's/"layers"/"strata"/g' "$cli_tmp/cut/metrics.jsonl" && cp "$run/summary.json" "$cli_tmp/cut/"
expect_exit 2 "$EPMOE" report "$cli_tmp/cut" --out "$cli_tmp/r2"
expect_one_error_line
expect_stderr_has "$cli_tmp/cut: not what epmoe writes (KeyError: 'layers')"
EPMOE_PYTHON=/bin/false expect_exit 2 "$EPMOE" report "$run" --out "$cli_tmp/r1"
expect_one_error_line
expect_stderr_has "python3-matplotlib"
EPMOE_REPORT_SCRIPT=$cli_tmp/nope.py expect_exit 2 "$EPMOE" report "$run" --out "$cli_tmp/r1"
expect_stderr_has "EPMOE_REPORT_SCRIPT=$cli_tmp/nope.py: no such file"
if [ -e "$cli_tmp/r1" ]; then fail_check "a refused report left $cli_tmp/r1"; else pass "  no folder left behind"; fi
expect_exit 2 "${mpiexec[@]}" -n 2 "$EPMOE" report "$run" --out "$cli_tmp/r1"
expect_one_error_line
expect_stderr_has "one process"

# The script beside the binary's folder (build/epmoe -> ../src/app/report.py) comes before the configured source
# tree's, and its exit code is epmoe's.
mkdir -p "$cli_tmp/tree/build" "$cli_tmp/tree/src/app"
cp "$EPMOE" "$cli_tmp/tree/build/epmoe"
printf 'import sys\nopen(sys.argv[2] + ".args", "w").write(" ".join(sys.argv[1:]))\nsys.exit(3)\n' \
    >"$cli_tmp/tree/src/app/report.py"
expect_exit 3 "$cli_tmp/tree/build/epmoe" report "$run" --out "$cli_tmp/stub"
if grep -qF -- "--out $cli_tmp/stub $run" "$cli_tmp/stub.args" 2>/dev/null; then pass "  ran ../src/app/report.py"; else
    fail_check "the script beside the binary did not run with --out and the DIR"; fi
finish
