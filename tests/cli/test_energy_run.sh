#!/usr/bin/env bash
# Energy through a whole `epmoe run`, on a copy of the fake AMD Zen powercap tree (tests/fixtures/sysfs/
# amd-zen, which copies the kernel's layout: intel-rapl:N package zones with core sub-zones). A writer
# adds known increments to both packages' energy_uj while the run is going, including a wraparound of
# package 0 at max_energy_range_uj. The summary's joules must equal the increments exactly, counted once
# for the host even though several ranks share it. Also: an explicit unreadable source exits 2 naming
# the path; `auto` falls back to estimated and says why.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
fixtures=${EPMOE_FIXTURES:-$EPMOE_SOURCE_DIR/tests/fixtures}
read -r -a mpiexec <<<"$MPIEXEC"
small=(--set model.d_model=48 --set model.d_ff=80 --set model.num_layers=2 --tokens-per-rank 32 -q)

tree=$cli_tmp/sysfs
cp -a "$fixtures/sysfs/amd-zen" "$tree"
zone0=$tree/devices/virtual/powercap/intel-rapl/intel-rapl:0
zone1=$tree/devices/virtual/powercap/intel-rapl/intel-rapl:1
max0=$(cat "$zone0/max_energy_range_uj")

# Writes increments (uJ) to both packages once the run has opened its source (its metrics file exists).
# Package 0 first jumps to 2 J below its maximum, then wraps: old + inc past max becomes old + inc - max,
# as the reader assumes. Every change between two reads is far below the range, so one wrap is exact.
write_increments() {
    local out=$1 inc v
    for _ in $(seq 400); do [ -e "$out/metrics.jsonl.tmp" ] && break; sleep 0.01; done
    echo $((max0 - 2000000)) >"$zone0/energy_uj.new" && mv "$zone0/energy_uj.new" "$zone0/energy_uj"
    for inc in 1500000 3000000 2500000 700000; do
        v=$(($(cat "$zone0/energy_uj") + inc))
        [ "$v" -gt "$max0" ] && v=$((v - max0))
        echo "$v" >"$zone0/energy_uj.new" && mv "$zone0/energy_uj.new" "$zone0/energy_uj"
        v=$(($(cat "$zone1/energy_uj") + inc / 2))
        echo "$v" >"$zone1/energy_uj.new" && mv "$zone1/energy_uj.new" "$zone1/energy_uj"
    done
    # Metrics lines so far: steps past these read the counters after every write.
    wc -l <"$out/metrics.jsonl.tmp" >"$out/writer.done"
}

# One run with the writer; at least two steps must read the counters after the last write, so a run that
# was too short for that is repeated longer.
run_with_writer() {  # run_with_writer NP OUT
    local np=$1 out=$2 steps=200
    for _ in 1 2 3 4; do
        rm -rf "$out"
        cp "$fixtures/sysfs/amd-zen/devices/virtual/powercap/intel-rapl/intel-rapl:0/energy_uj" "$zone0/energy_uj"
        cp "$fixtures/sysfs/amd-zen/devices/virtual/powercap/intel-rapl/intel-rapl:1/energy_uj" "$zone1/energy_uj"
        write_increments "$out" &
        local writer=$!
        expect_exit 0 "${mpiexec[@]}" -np "$np" "$EPMOE" run "${small[@]}" --steps $steps --energy-source rapl \
            --set energy.sysfs_root="$tree" --set output.progress_interval_s=1000 --out "$out"
        if [ -e "$out/writer.done" ] && [ "$(cat "$out/writer.done")" -le $((steps - 3)) ]; then
            wait $writer
            return 0
        fi
        kill $writer 2>/dev/null
        wait $writer 2>/dev/null
        steps=$((steps * 4))
    done
    fail_check "the run always ended before the writer finished"
}

start0=$(cat "$zone0/energy_uj")
# Package 0 jumps from start0 to max0 - 2 J, then gains 7.7 J through one wrap; package 1 gains 3.85 J.
expected=$(python3 -c "print(((($max0 - 2000000) - $start0) + 7700000 + 3850000) / 1e6)")
for np in 1 3; do
    run_with_writer $np "$cli_tmp/rapl$np"
    if python3 - "$cli_tmp/rapl$np/summary.json" "$expected" "$np" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
want, ranks = float(sys.argv[2]), int(sys.argv[3])
e = s["energy"]
assert e["source"] == "rapl", e["source"]
assert abs(e["joules"] - want) < 1e-6, f"joules {e['joules']!r} != {want!r}"
assert len(e["per_rank_joules"]) == ranks and abs(sum(e["per_rank_joules"]) - want) < 1e-6
assert abs(e["joules_per_token"] - want / s["tokens_total"]) < 1e-12
PY
    then pass "  $np rank(s): summary joules equal the written increments ($expected J), counted once"
    else fail_check "$np rank(s): joules differ from $expected"; fi
done

# Explicit sources that cannot be read exit 2 naming the path; auto falls back and says why.
expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" run "${small[@]}" --steps 1 --energy-source rapl \
    --set energy.sysfs_root="$fixtures/sysfs/nothing" --out "$cli_tmp/none1"
expect_stderr_has "epmoe: error:"
expect_stderr_has "$fixtures/sysfs/nothing/class/powercap"
expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" run "${small[@]}" --steps 1 --energy-source hwmon \
    --set energy.sysfs_root="$fixtures/sysfs/nothing" --out "$cli_tmp/none2"
expect_stderr_has "$fixtures/sysfs/nothing/class/hwmon"
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" run --tokens-per-rank 8 --set model.d_model=48 --set model.d_ff=80 \
    --steps 1 --set energy.sysfs_root="$fixtures/sysfs/nothing" --out "$cli_tmp/auto"
expect_stderr_has "epmoe: energy source estimated:"
if python3 -c "import json,sys; e=json.load(open(sys.argv[1]))['energy']; assert e['source']=='estimated' and e['joules']>0 and 'estimate' in e and e['reason']" "$cli_tmp/auto/summary.json"; then
    pass "  auto on a machine with nothing readable: estimated, with its coefficients and reason"
else fail_check "auto summary"; fi
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" run "${small[@]}" --steps 1 --energy-source none --out "$cli_tmp/off"
if python3 -c "import json,sys; e=json.load(open(sys.argv[1]))['energy']; assert e['source']=='none' and e['joules'] is None and e['joules_per_token'] is None" "$cli_tmp/off/summary.json"; then
    pass "  energy source none: every figure null"
else fail_check "none summary"; fi

finish
