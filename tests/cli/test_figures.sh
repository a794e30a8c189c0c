#!/usr/bin/env bash
# The figures a run prints and writes say what they are: load figures over MoE layers only (a dense layer has
# none, so max/mean stays >= 1), one energy entry per host at 1-4 ranks, fidelity that counts capacity drops,
# the estimated energy source labelled as a model with its coefficients, metrics lines naming the steps they
# cover, integer counts, and summary.json's run block (version, UTC start/end, hosts, command line).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
fixtures=${EPMOE_FIXTURES:-$EPMOE_SOURCE_DIR/tests/fixtures}
read -r -a mpiexec <<<"$MPIEXEC"
small=(--set model.d_model=48 --set model.d_ff=80 --set model.num_layers=2 --tokens-per-rank 32 -q)

# check_json FILE LABEL PYTHON-EXPRESSION: passes when the expression over `s` (the parsed file; `lines` for a
# .jsonl) is true.
check_json() {
    local file=$1 label=$2 expr=$3
    if python3 - "$file" "$expr" <<'EOF'; then pass "  $label"; else fail_check "$label: $expr"; fi
import json, sys
path, expr = sys.argv[1], sys.argv[2]
if path.endswith(".jsonl"):
    lines = [json.loads(l) for l in open(path)]
    s = lines[-1]
else:
    s = json.load(open(path))
sys.exit(0 if eval(expr) else 1)
EOF
}

# A dense layer (qwen2_moe_shared's layer 1 is in mlp_only_layers) enters no load figure.
ck=$fixtures/checkpoints/qwen2_moe_shared
out=$cli_tmp/dense
expect_exit 0 "${mpiexec[@]}" -n 2 "$EPMOE" run --model "$ck" --input "$ck/input.safetensors" --steps 2 -q \
    --energy-source none --out "$out"
check_json "$out/summary.json" "rank max/mean over MoE layers is >= 1" \
    's["load"]["rank_max_over_mean_last"] >= 1 and s["load"]["max_over_mean_last"] >= 1'
check_json "$out/metrics.jsonl" "the dense layer is marked and has no load figures" \
    '[l["kind"] for l in s["layers"]] == ["moe", "dense", "moe"] and s["layers"][1]["max_over_mean"] is None'
expect_exit 0 "$EPMOE" run --model "$ck" --input "$ck/input.safetensors" --layers 1-2 --steps 1 --energy-source none \
    --out "$cli_tmp/dense1"
expect_stdout_lacks "rank max/mean 0."

# One energy entry per host, whatever the ranks on it; the estimate says it is a model, -q or not.
for ranks in 1 2 3 4; do
    out=$cli_tmp/energy$ranks
    expect_exit 0 "${mpiexec[@]}" -n "$ranks" "$EPMOE" run "${small[@]}" --steps 2 --energy-source estimated --out "$out"
    check_json "$out/metrics.jsonl" "one energy.hosts entry at $ranks ranks (one host)" 'len(s["energy"]["hosts"]) == 1'
    expect_stdout_has "(a model, not a measurement: 30 pJ/FLOP, 150 pJ/byte, 3 W a core idle; energy.estimate.*)"
done

# Capacity drops change the output: fidelity counts them without any bias.
out=$cli_tmp/drops
expect_exit 0 "${mpiexec[@]}" -n 2 "$EPMOE" run "${small[@]}" --steps 2 --capacity-factor 0.5 --energy-source none \
    --out "$out"
check_json "$out/summary.json" "dropped assignments are changed assignments (no bias: the same fraction)" \
    's["drop_rate"] > 0 and abs(s["routing"]["changed_assignment_fraction"] - s["drop_rate"]) < 1e-12'
check_json "$out/summary.json" "and the output moved" 's["routing"]["output_rel_l2"] > 0'

# Metrics lines name the steps they cover; counts are integers; the run block is there.
out=$cli_tmp/every3
expect_exit 0 "$EPMOE" run "${small[@]}" --steps 7 --set coordinator.every_n_steps=3 --energy-source none --out "$out"
check_json "$out/metrics.jsonl" "lines cover steps 0-2, 3-5, 6" \
    '[(l["first_step"], l["step"], l["steps_covered"]) for l in lines] == [(0, 2, 3), (3, 5, 3), (6, 6, 1)]'
check_json "$out/metrics.jsonl" "tokens and rows are integers" \
    'all(isinstance(l["tokens"], int) and all(isinstance(x, int) for x in l["layers"][0]["rank_rows"]) for l in lines)'
check_json "$out/summary.json" "tokens_total is an integer" 'isinstance(s["tokens_total"], int) and s["tokens_total"] == 224'
keys='{"epmoe_version", "git_describe", "started_utc", "finished_utc", "hosts", "command_line"}'
check_json "$out/summary.json" "run: version, UTC start and end, hosts, command line" \
    "set(s['run']) == $keys and s['run']['started_utc'].endswith('Z') and s['run']['hosts'][0]['ranks'] == [0]"
check_json "$out/summary.json" "  the command line as typed" \
    '"--set coordinator.every_n_steps=3" in s["run"]["command_line"]'
finish
