#!/usr/bin/env bash
# `epmoe compare` on a small model: a progress line per pair and repeat (interleaved), compare.csv/compare.md
# with every row and column (median, min, max, a ratio only where the ranges do not overlap), each run's results
# directory; identical work gives no ratio beyond its spread; bad pairs, --policy, bad counts and a missing
# profile exit 2.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
read -r -a mpiexec <<<"$MPIEXEC"
small=(--set model.d_model=32 --set model.d_ff=48 --set model.num_layers=2 --steps 4 --tokens-per-rank 32
       --energy-source estimated --set routing.fidelity_sample_every=4)

expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" compare "${small[@]}" --pairs aux_free/contiguous,none/replicated,prev_batch/balanced \
    --repeats 2 --warmup 1 --out "$cli_tmp/cmp"
for i in 1 2 3 4 5 6 7 8; do expect_stderr_has "epmoe compare: [$i/8]"; done
expect_stderr_has "[1/8] none/contiguous repeat 1"
expect_stderr_has "[5/8] none/contiguous repeat 2"  # ABCD ABCD, not AABBCCDD
expect_stdout_has "results: $cli_tmp/cmp"
if python3 - "$cli_tmp/cmp" <<'PY'
import csv, json, os, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(d, "compare.csv"))))
assert [r["pair"] for r in rows] == ["none/contiguous", "aux_free/contiguous", "none/replicated", "prev_batch/balanced"], rows
cols = ["tokens_per_s", "step_p99_s", "rank_max_over_mean", "expert_max_over_mean", "joules_per_token",
        "changed_assignment_fraction", "output_rel_l2"]
for c in cols:
    for suffix in ("", "_min", "_max", "_ratio"): assert c + suffix in rows[0], f"missing column {c}{suffix}"
    assert float(rows[0][c + "_ratio"]) == 1.0, f"baseline {c} ratio {rows[0][c + '_ratio']}"
    for r in rows:
        assert r[c] != "", f"{r['pair']} {c} empty"
        assert float(r[c + "_min"]) <= float(r[c]) <= float(r[c + "_max"]), (r["pair"], c)
        if r[c + "_ratio"] and r is not rows[0]:  # a ratio only where the ranges do not overlap
            assert float(r[c + "_min"]) > float(rows[0][c + "_max"]) or float(r[c + "_max"]) < float(rows[0][c + "_min"])
assert float(rows[0]["changed_assignment_fraction"]) == 0 and float(rows[0]["output_rel_l2"]) == 0
assert float(rows[1]["changed_assignment_fraction"]) > 0 and float(rows[1]["output_rel_l2"]) > 0
assert float(rows[2]["changed_assignment_fraction"]) == 0, "a placement never changes routing"
for r in rows:
    for rep in (0, 1):
        s = json.load(open(os.path.join(d, f'{r["policy"]}-{r["placement"]}-r{rep}', "summary.json")))
        assert s["placement"] == r["placement"] and s["routing"]["policy"] == r["policy"]
        assert s["steps"] == 5, "4 timed steps after 1 warm-up step"
md = open(os.path.join(d, "compare.md")).read().splitlines()
assert md[0].startswith("| pair |") and len([l for l in md if l.startswith("| ")]) == 5, md
m = json.loads(open(os.path.join(d, "aux_free-contiguous-r0", "metrics.jsonl")).readline())
for k in ("max_over_mean", "cv", "gini", "entropy", "rank_max_over_mean", "balancedness"): assert k in m["load"], k
for k in ("changed_assignment_fraction", "output_rel_l2", "fidelity_s"): assert k in m["fidelity"], k
PY
then pass "  compare.csv and compare.md: 4 rows, every column, baseline ratios 1.0"
else fail_check "compare tables"; fi

# Identical work (1 rank: the placement changes nothing; no policy): no ratio may claim a difference beyond the
# spread of the repeats (the baseline no longer pays the start-up alone).
expect_exit 0 "$EPMOE" compare "${small[@]}" --set workload.steps=2 --pairs none/round_robin --repeats 5 --warmup 1 --out "$cli_tmp/same"
if python3 - "$cli_tmp/same/compare.csv" <<'PY'
import csv, sys
row = list(csv.DictReader(open(sys.argv[1])))[1]
r = row["tokens_per_s_ratio"]
assert r == "" or 0.67 < float(r) < 1.5, row
PY
then pass "  identical work: tokens/s within the spread of 1.0"
else fail_check "identical work gave a ratio"; fi
expect_exit 2 "$EPMOE" compare "${small[@]}" --policy aux_free --out "$cli_tmp/bad"
expect_stderr_has "unrecognised option '--policy'"
expect_exit 2 "$EPMOE" compare "${small[@]}" --set policy.name=aux_free --out "$cli_tmp/bad"
expect_stderr_has "give them as --pairs"
expect_exit 2 "$EPMOE" compare "${small[@]}" --repeats 0 --out "$cli_tmp/bad"
expect_stderr_has "--repeats 0"

expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" compare "${small[@]}" --pairs aux_free --out "$cli_tmp/bad"
expect_stderr_has "is not POLICY/PLACEMENT"
expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" compare "${small[@]}" --pairs bogus/contiguous --out "$cli_tmp/bad"
expect_stderr_has "policy.name"
expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" run "${small[@]}" --placement balanced --out "$cli_tmp/bad"
expect_stderr_has "placement.profile"
expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" run "${small[@]}" --placement replicated --set placement.profile="$cli_tmp/nowhere" \
    --out "$cli_tmp/bad"
expect_stderr_has "$cli_tmp/nowhere/metrics.jsonl"

# --mode eval: the whole model's perplexity per pair; dropping tokens by capacity changes it, the baseline's
# delta_ppl is 0; text keys are refused in --mode run.
text=(--set model.d_model=32 --set model.d_ff=48 --set model.num_layers=2 --set model.vocab_size=61
      --set model.num_heads=2 --set model.num_kv_heads=1 --set model.head_dim=16 --set text.synthetic_sequences=4
      --set text.synthetic_length=16 --energy-source none)
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" compare --mode eval "${text[@]}" --capacity-factor 0.5 --repeats 1 \
    --pairs aux_free/contiguous --out "$cli_tmp/ceval"
if python3 - "$cli_tmp/ceval/compare.csv" <<'PY'
import csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [r["pair"] for r in rows] == ["none/contiguous", "aux_free/contiguous"], rows
assert float(rows[0]["delta_ppl"]) == 0 and float(rows[0]["ppl"]) > 1, rows[0]
assert math.isclose(float(rows[1]["delta_ppl"]), float(rows[1]["ppl"]) - float(rows[0]["ppl"]), rel_tol=1e-4, abs_tol=1e-3)  # 6 digits
print(f"ppl {rows[0]['ppl']} -> {rows[1]['ppl']}")
PY
then pass "  compare --mode eval: ppl and delta_ppl columns"
else fail_check "compare --mode eval tables"; fi
expect_exit 2 "$EPMOE" compare "${small[@]}" --ctx 16 --out "$cli_tmp/bad"
expect_stderr_has "are for --mode eval"
finish
