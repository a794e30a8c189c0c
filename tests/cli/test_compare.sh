#!/usr/bin/env bash
# `epmoe compare` on a small model: a progress line per pair, compare.csv/compare.md with every row and
# column and baseline ratios of 1.0, each pair's results directory; bad pairs and a missing profile exit 2.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
read -r -a mpiexec <<<"$MPIEXEC"
small=(--set model.d_model=32 --set model.d_ff=48 --set model.num_layers=2 --steps 4 --tokens-per-rank 32
       --energy-source estimated --set routing.fidelity_sample_every=4)

expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" compare "${small[@]}" --pairs aux_free/contiguous,none/replicated,prev_batch/balanced \
    --out "$cli_tmp/cmp"
for i in 1 2 3 4; do expect_stderr_has "epmoe compare: [$i/4]"; done
expect_stderr_has "[1/4] none/contiguous"
expect_stdout_has "results: $cli_tmp/cmp"
if python3 - "$cli_tmp/cmp" <<'PY'
import csv, json, os, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(d, "compare.csv"))))
assert [r["pair"] for r in rows] == ["none/contiguous", "aux_free/contiguous", "none/replicated", "prev_batch/balanced"], rows
cols = ["tokens_per_s", "step_p99_s", "rank_max_over_mean", "expert_max_over_mean", "joules_per_token",
        "changed_assignment_fraction", "output_rel_l2"]
for c in cols:
    assert c in rows[0] and c + "_ratio" in rows[0], f"missing column {c}"
    assert float(rows[0][c + "_ratio"]) == 1.0, f"baseline {c} ratio {rows[0][c + '_ratio']}"
    for r in rows: assert r[c] != "", f"{r['pair']} {c} empty"
assert float(rows[0]["changed_assignment_fraction"]) == 0 and float(rows[0]["output_rel_l2"]) == 0
assert float(rows[1]["changed_assignment_fraction"]) > 0 and float(rows[1]["output_rel_l2"]) > 0
assert float(rows[2]["changed_assignment_fraction"]) == 0, "a placement never changes routing"
for r in rows[1:]:
    s = json.load(open(os.path.join(d, r["policy"] + "-" + r["placement"], "summary.json")))
    # The CSV holds 6 significant digits: relative, since a slow baseline makes the ratio large.
    ratio = s["tokens_per_s"] / float(rows[0]["tokens_per_s"])
    assert abs(ratio / float(r["tokens_per_s_ratio"]) - 1) < 3e-5, (ratio, r["tokens_per_s_ratio"])
    assert s["placement"] == r["placement"] and s["routing"]["policy"] == r["policy"]
md = open(os.path.join(d, "compare.md")).read().splitlines()
assert md[0].startswith("| pair |") and len([l for l in md if l.startswith("| ")]) == 5, md
m = json.loads(open(os.path.join(d, "aux_free-contiguous", "metrics.jsonl")).readline())
for k in ("max_over_mean", "cv", "gini", "entropy", "rank_max_over_mean", "balancedness"): assert k in m["load"], k
for k in ("changed_assignment_fraction", "output_rel_l2", "fidelity_s"): assert k in m["fidelity"], k
PY
then pass "  compare.csv and compare.md: 4 rows, every column, baseline ratios 1.0"
else fail_check "compare tables"; fi

expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" compare "${small[@]}" --pairs aux_free --out "$cli_tmp/bad"
expect_stderr_has "is not POLICY/PLACEMENT"
expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" compare "${small[@]}" --pairs bogus/contiguous --out "$cli_tmp/bad"
expect_stderr_has "policy.name"
expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" run "${small[@]}" --placement balanced --out "$cli_tmp/bad"
expect_stderr_has "placement.profile"
expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" run "${small[@]}" --placement replicated --set placement.profile="$cli_tmp/nowhere" \
    --out "$cli_tmp/bad"
expect_stderr_has "$cli_tmp/nowhere/metrics.jsonl"
finish
