#!/usr/bin/env bash
# `epmoe run` end to end under this build's MPI: the results directory, rank invariance of the dumped
# output at 1-4 ranks, bit-identical reruns, bad input (exit 2, one line naming the key), a killed run
# leaving no summary.json, and a lost rank ending the job.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
read -r -a mpiexec <<<"$MPIEXEC"
small=(--set model.d_model=48 --set model.d_ff=80 --set model.num_layers=2 -q)

# 0. The command word: --help and --version exit 0; an unknown command exits 2 naming it.
expect_exit 0 "$EPMOE" --help
expect_stdout_has "compare"
expect_exit 0 "$EPMOE" --version
expect_stdout_has "epmoe "
expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" rnu
expect_stderr_has "epmoe: error: unknown command 'rnu' (commands: run, eval, generate, train, tokenize, compare, simulate, report, info, inspect"
expect_one_error_line

# 1. The results directory: every summary key with its type, one metrics line per step, no temp files.
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" run "${small[@]}" --steps 3 --tokens-per-rank 16 --out "$cli_tmp/r1"
expect_stdout_has "results: $cli_tmp/r1"
if python3 - "$cli_tmp/r1" <<'PY'
import json, sys, os
d = sys.argv[1]
s = json.load(open(os.path.join(d, "summary.json")))
num = (int, float)
def need(obj, key, types, nullable=False):
    assert key in obj, f"missing {key}"
    v = obj[key]
    assert (nullable and v is None) or isinstance(v, types), f"{key} = {v!r} has the wrong type"
    return v
assert need(s, "ranks", int) == 2
assert need(s, "tokens_total", num) == 2 * 16 * 3
assert need(s, "tokens_per_s", num) > 0
for k in ("p50", "p99", "max"): assert need(s["step_time_s"], k, num) > 0
for k in ("gate", "dispatch", "expert", "combine", "coordinator"): assert need(s["time_breakdown_s"], k, num) >= 0
assert need(s, "expert_gflops", num) > 0
for k in ("max_over_mean_first", "max_over_mean_last", "cv_last", "gini_last", "rank_max_over_mean_last"):
    assert need(s["load"], k, num) >= 0
assert need(s, "drop_rate", num) == 0
e = s["energy"]
assert need(e, "source", str) in ("rapl", "hwmon", "estimated", "none")
for k in ("joules", "joules_per_token", "avg_power_w"): need(e, k, num, nullable=True)
need(e, "per_rank_joules", list, nullable=True)
if e["source"] != "none":
    assert len(e["per_rank_joules"]) == 2 and abs(sum(e["per_rank_joules"]) - e["joules"]) < 1e-9 * max(1, e["joules"])
assert need(s["routing"], "policy", str) == "none"
need(s["routing"], "changed_assignment_fraction", num)
mem = s["memory"]
weights, rss = need(mem, "weight_bytes_per_rank", list), need(mem, "peak_rss_bytes", list)
assert len(weights) == 2 and len(rss) == 2, mem
for w, r in zip(weights, rss):  # a process's peak RSS holds at least its weights, and a process is > 1 MiB
    assert isinstance(r, int) and r >= w and r > 1 << 20, mem
lines = open(os.path.join(d, "metrics.jsonl")).read().splitlines()
assert len(lines) == 3, f"{len(lines)} metrics lines for 3 steps"
for i, line in enumerate(lines):
    m = json.loads(line)
    assert m["step"] == i and len(m["layers"]) == 2 and len(m["layers"][0]["expert_load"]) == 8
    assert sum(m["layers"][0]["expert_load"]) == 2 * 16 * 2, "top-2 of 32 tokens, dropless"
    assert len(m["per_rank"]["tokens"]) == 2 and len(m["biases"]) == 2
c = json.load(open(os.path.join(d, "config.json")))
assert c["model"]["d_model"] == 48 and c["workload"]["steps"] == 3
assert not [f for f in os.listdir(d) if f.endswith(".tmp")], "temporary files left behind"
PY
then pass "  summary.json, metrics.jsonl and config.json are complete and typed"
else fail_check "results directory check"; fi

# 1b. resources.mpi_wait: both ways of waiting in collectives give the same bits, and the summary says which
# ran (auto picks one; an unknown value is an error naming the key).
for mode in block yield; do
    expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" run "${small[@]}" --steps 2 --tokens-per-rank 8 \
        --set resources.mpi_wait=$mode --out "$cli_tmp/wait-$mode" --dump-output "$cli_tmp/wait-$mode.safetensors"
    if python3 -c "import json,sys; assert json.load(open(sys.argv[1]))['compute']['mpi_wait'] == sys.argv[2]" \
        "$cli_tmp/wait-$mode/summary.json" $mode; then pass "  summary says mpi_wait $mode"
    else fail_check "summary.json compute.mpi_wait is not $mode"; fi
done
if cmp -s "$cli_tmp/wait-block.safetensors" "$cli_tmp/wait-yield.safetensors"; then pass "  block and yield: same bits"
else fail_check "block and yield outputs differ"; fi
expect_exit 2 "$EPMOE" run "${small[@]}" --set resources.mpi_wait=spin
expect_stderr_has "resources.mpi_wait"

# 2. Rank invariance: the same 12 global tokens at 1, 2, 3 and 4 ranks, with capacity drops.
for np in 1 2 3 4; do
    expect_exit 0 "${mpiexec[@]}" -np $np "$EPMOE" run "${small[@]}" --steps 2 --tokens-per-rank $((12 / np)) \
        --capacity-factor 1.0 --set model.top_k=2 --out "$cli_tmp/inv$np" --dump-output "$cli_tmp/inv$np.safetensors"
done
for np in 2 3 4; do
    if python3 "$here/st_read.py" compare "$cli_tmp/inv$np.safetensors" "$cli_tmp/inv1.safetensors" >"$cli_tmp/cmp"; then
        pass "  $np ranks match 1 rank: $(cat "$cli_tmp/cmp")"
    else fail_check "$np ranks differ from 1 rank: $(cat "$cli_tmp/cmp")"; fi
done

# 3. Same seed and rank count: bit-identical output.
expect_exit 0 "${mpiexec[@]}" -np 3 "$EPMOE" run "${small[@]}" --steps 2 --tokens-per-rank 4 --capacity-factor 1.0 \
    --set model.top_k=2 --out "$cli_tmp/again" --dump-output "$cli_tmp/again.safetensors"
if cmp -s "$cli_tmp/again.safetensors" "$cli_tmp/inv3.safetensors"; then pass "  rerun is bit-identical"
else fail_check "rerun differs"; fi

# 4. Bad input: exit 2, one line on stderr naming the key or value, from rank 0 only, no results left.
bad() {  # bad TEXT ARGS...: epmoe run ARGS at 3 ranks exits 2 with one error line containing TEXT
    local text=$1
    shift
    expect_exit 2 "${mpiexec[@]}" -np 3 "$EPMOE" run -q --out "$cli_tmp/bad" "$@"
    expect_stderr_has "$text"
    expect_one_error_line
}
bad "model.top_k = 9" --set model.top_k=9
bad "unknown config key 'model.nope'" --set model.nope=1
bad "model.d_model=abc" --set model.d_model=abc
bad "workload.steps = -1" --steps -1
bad "model.d_ff = 0" --set model.d_ff=0
bad "model.gate = \"relu\"" --set model.gate=relu
bad "routing.capacity_factor" --capacity-factor -1
bad "energy.source" --energy-source solar
bad "unrecognised option '--stpes'" --stpes 3
bad "$cli_tmp/missing.json: cannot read" --config "$cli_tmp/missing.json"
echo '{"model": {"top_k": 2,}}' >"$cli_tmp/broken.json"
bad "$cli_tmp/broken.json: not valid JSON" --config "$cli_tmp/broken.json"
echo '{"model": {"topk": 2}}' >"$cli_tmp/typo.json"
bad "unknown config key 'model.topk'" --config "$cli_tmp/typo.json"
echo '{"model": {"top_k": "two"}}' >"$cli_tmp/type.json"
bad "model.top_k = \"two\" must be an integer" --config "$cli_tmp/type.json"
touch "$cli_tmp/file"
expect_exit 2 "${mpiexec[@]}" -np 3 "$EPMOE" run "${small[@]}" --steps 1 --out "$cli_tmp/file/out"
expect_stderr_has "epmoe: error: results directory $cli_tmp/file/out: cannot create"
if [ ! -e "$cli_tmp/bad/summary.json" ]; then pass "  no summary.json after bad input"; else fail_check "summary.json left"; fi

# 5. A batch job that asked for 4 tasks but started one singleton process is refused.
expect_exit 2 env SLURM_NTASKS=4 SLURM_STEP_ID=0 "$EPMOE" run -q --steps 1 --out "$cli_tmp/slurm"
expect_stderr_has "SLURM_NTASKS=4 but MPI started a world of 1 rank"

# 6. A run killed in the middle leaves no summary.json (and no final metrics.jsonl).
"${mpiexec[@]}" -np 2 "$EPMOE" run "${small[@]}" --steps 100000 --tokens-per-rank 64 --out "$cli_tmp/killed" \
    >/dev/null 2>&1 </dev/null &
runner=$!
for _ in $(seq 100); do [ -s "$cli_tmp/killed/metrics.jsonl.tmp" ] && break; sleep 0.2; done
kill -TERM $runner 2>/dev/null
wait $runner 2>/dev/null
sleep 1
if [ -s "$cli_tmp/killed/metrics.jsonl.tmp" ] && [ ! -e "$cli_tmp/killed/summary.json" ] && [ ! -e "$cli_tmp/killed/metrics.jsonl" ]; then
    pass "  killed run: metrics.jsonl.tmp only, no summary.json"
else fail_check "killed run left: $(ls "$cli_tmp/killed" 2>&1)"; fi

# 7. A rank lost mid-run ends the job with a non-zero exit within seconds, never a hang.
"${mpiexec[@]}" -np 3 "$EPMOE" run "${small[@]}" --steps 100000 --tokens-per-rank 64 --out "$cli_tmp/lost" \
    >/dev/null 2>&1 </dev/null &
runner=$!
for _ in $(seq 100); do [ -s "$cli_tmp/lost/metrics.jsonl.tmp" ] && break; sleep 0.2; done
victim=$(pgrep -f -- "--out $cli_tmp/lost" | while read -r p; do [ "$(cat /proc/"$p"/comm 2>/dev/null)" = epmoe ] && echo "$p"; done | tail -n 1)
kill -KILL "$victim" 2>/dev/null
start=$(date +%s)
# The guard's sleep must not hold the test's stdout: ctest would wait for it to close, 60 s.
( sleep 60; kill -KILL $runner 2>/dev/null ) >/dev/null 2>&1 &
guard=$!
wait $runner
code=$?
kill $guard 2>/dev/null
took=$(($(date +%s) - start))
pkill -KILL -f -- "--out $cli_tmp/lost" 2>/dev/null
if [ "$code" -ne 0 ] && [ "$took" -lt 30 ]; then pass "  lost rank: exit $code after ${took}s"
else fail_check "lost rank: exit $code after ${took}s"; fi

finish
