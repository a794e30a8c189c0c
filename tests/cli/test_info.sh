#!/usr/bin/env bash
# `epmoe info`: all ranks listed, every JSON field present, fixture energy sources shown, bad keys exit 2.
# Env (set by CTest): EPMOE, MPIEXEC (with its flags), EPMOE_MPI_FLAVOR, EPMOE_SOURCE_DIR, EPMOE_FIXTURES.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
EPMOE_SOURCE_DIR=${EPMOE_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
fixtures=${EPMOE_FIXTURES:-$EPMOE_SOURCE_DIR/tests/fixtures}
flavor=${EPMOE_MPI_FLAVOR:-openmpi}
read -r -a mpiexec <<<"$MPIEXEC"

# expect_json PYTHON_CHECK: runs the check on the last stdout parsed as `j`; passes if it raises nothing.
expect_json() {
    if python3 -c "import json, sys
j = json.load(open(sys.argv[1]))
$1" "$out_file" 2>"$cli_tmp/py_err"; then
        pass "  json: ${2:-$1}"
    else
        fail_check "json check failed: ${2:-$1}: $(tail -n 1 "$cli_tmp/py_err")"
    fi
}

# Text: three ranks, each with its binding line, all on this host.
expect_exit 0 "${mpiexec[@]}" -np 3 "$EPMOE" info
expect_stdout_has "ranks: 3"
for r in 0 1 2; do expect_stdout_has "rank $r on "; done
expect_stdout_has "ranks 0, 1, 2"
expect_stdout_has "topology (host "
expect_stdout_has "blas: OpenBLAS, core "
expect_stdout_has "auto would pick: "

# JSON: every field, with the right shapes.
expect_exit 0 "${mpiexec[@]}" -np 3 "$EPMOE" info --json
expect_json "assert j['ranks'] == 3
assert sorted(r for h in j['hosts'] for r in h['ranks']) == [0, 1, 2] and all(h['name'] for h in j['hosts'])" \
    "ranks and hosts[{name, ranks}]"
expect_json "t = j['topology']
assert all(t[k] >= 1 for k in ('packages', 'cores', 'pus', 'numa_nodes')) and t['pus'] >= t['cores']
assert all(set(t['caches'][c]) == {'size_bytes', 'count'} for c in ('l1d', 'l2', 'l3'))" \
    "topology{packages, cores, pus, numa_nodes, caches{l1d, l2, l3}}"
expect_json "assert [b['rank'] for b in j['bindings']] == [0, 1, 2] and all(b['cpus'] for b in j['bindings'])" \
    "bindings[{rank, cpus}]"
want_library=$([ "$flavor" = openmpi ] && echo "Open MPI" || echo "MPICH")
expect_json "assert j['mpi']['library'] == '$want_library' and j['mpi']['version_string']" "mpi{library, version_string}"
expect_json "b = j['blas']
assert b['library'] == 'OpenBLAS' and b['config'].startswith('OpenBLAS') and b['core'] and b['threads'] >= 1" \
    "blas{library, config, core, threads}"
expect_json "e = j['energy']
assert e['sysfs_root'] == '/sys' and e['auto_choice'] in ('rapl', 'hwmon', 'estimated') and e['auto_reason']
assert isinstance(e['rapl'], list) and isinstance(e['hwmon'], list)" \
    "energy{sysfs_root, auto_choice, auto_reason, rapl, hwmon}"

# A fake Intel two-socket tree: its RAPL zones are listed, and what is summed.
intel=$fixtures/sysfs/intel-2s
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" info --set "energy.sysfs_root=$intel"
expect_stdout_has "intel-rapl:0  package-0  (summed)  readable: yes"
expect_stdout_has "intel-rapl:1:2  dram  (summed)"
expect_stdout_has "intel-rapl:0:0  core  (not summed)"
expect_stdout_has "intel-rapl:2  psys  (not summed)"
expect_stdout_has "temp1_input 'Package id 1'"
expect_stdout_has "auto would pick: rapl"
expect_exit 0 "${mpiexec[@]}" -np 2 "$EPMOE" info --json --set "energy.sysfs_root=$intel"
expect_json "e = j['energy']
assert e['sysfs_root'] == '$intel' and e['auto_choice'] == 'rapl'
assert [z['name'] for z in e['rapl'] if z['counted']] == ['package-0', 'dram', 'package-1', 'dram']
assert all(z['readable'] for z in e['rapl']) and len(e['rapl']) == 9
assert [d['name'] for d in e['hwmon']] == ['acpitz', 'coretemp', 'coretemp']" "intel-2s zones and sensors"

# hwmon power sensors, and nothing readable at all.
expect_exit 0 "$EPMOE" info --set "energy.sysfs_root=$fixtures/sysfs/hwmon-power"
expect_stdout_has "power1_input 'CPU power'  power (summed)  readable: yes"
expect_stdout_has "auto would pick: hwmon"
expect_exit 0 "$EPMOE" info --set "energy.sysfs_root=$fixtures/sysfs/nothing"
expect_stdout_has "auto would pick: estimated (no readable RAPL under $fixtures/sysfs/nothing/class/powercap (no intel-rapl:* zones)"

# OpenBLAS on a pre-AVX core where the CPU has AVX2 (Debian's 0.3.21 takes newer Xeons for Prescott): info warns.
# Forced here with OPENBLAS_CORETYPE, which epmoe leaves alone; without it epmoe re-runs itself with the right core
# (checked on the device, where OpenBLAS detects Prescott: bench/device/ttt.md's machine).
if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
    OPENBLAS_CORETYPE=Prescott expect_exit 0 "$EPMOE" info
    expect_stdout_has "core Prescott"
    expect_stdout_has "warning: OpenBLAS runs its Prescott kernels on a CPU with AVX2"
fi
expect_exit 0 "$EPMOE" info --json
if python3 -c 'import json, sys; b = json.load(open(sys.argv[1]))["blas"]; assert b["core_detected"] is None, b' \
    "$out_file" 2>/dev/null; then pass "  info --json: blas.core_detected null (no re-exec)"
else fail_check "info --json: blas.core_detected"; fi

# Bad keys and values: one line naming the key, exit 2, on every rank count.
expect_exit 2 "${mpiexec[@]}" -np 2 "$EPMOE" info --set energy.bogus=1
expect_stderr_has "epmoe: error:"
expect_stderr_has "energy.bogus"
expect_exit 2 "$EPMOE" info --set energy.sample_hz=-1
expect_stderr_has "epmoe: error: config key energy.sample_hz = -1.0"
expect_exit 2 "$EPMOE" info --set energy.estimate.pj_per_flop=abc
expect_stderr_has "energy.estimate.pj_per_flop=abc"

finish
