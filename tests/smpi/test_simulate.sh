#!/usr/bin/env bash
# `epmoe simulate` for real: SimGrid's smpirun runs build-smpi/epmoe on simulated ranks. Checks a 16-rank
# fat-tree run and its results directory, torus and dragonfly and a platform FILE.xml, that the simulated
# routing (top-k ids and weights, per-step expert load histograms) equals a real 4-rank `epmoe run` of the same
# config and tokens, and bad input (one error line, exit 2, nothing that looks complete).
# Environment: EPMOE (the ordinary build's epmoe), EPMOE_SMPI_BIN (build-smpi/epmoe), MPIEXEC (with the flags
# its MPI needs). Last line: "N passed, N failed".
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/cli/lib.sh
source "$here/../cli/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe of the ordinary build}" "${EPMOE_SMPI_BIN:?set EPMOE_SMPI_BIN to build-smpi/epmoe}"
MPIEXEC=${MPIEXEC:-mpiexec}
export OPENBLAS_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1
# A fixed GEMM rate, so the test does not time a GEMM on a busy machine; --gflops-per-core 0 is tested below.
sim=("$EPMOE" simulate -q --set "simulate.binary=$EPMOE_SMPI_BIN" --gflops-per-core 20)
small=(--set model.num_layers=1 --steps 2)

json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
check() { # check NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then pass "  $1 = $3"; else fail_check "$1 = '$3', expected '$2'"; fi
}

# 1. 16 ranks on the default fat-tree (4 nodes of 4 ranks): the results directory of `run`, labelled.
d=$cli_tmp/sim16
expect_exit 0 "${sim[@]}" --ranks 16 "${small[@]}" --out "$d"
check "summary ranks" 16 "$(json "$d/summary.json" "d['ranks']")"
check "summary simulated" True "$(json "$d/summary.json" "d['simulated']")"
check "platform" "fat-tree FAT_TREE 4 20.0" \
    "$(json "$d/summary.json" "' '.join(str(d['platform'][k]) for k in ('kind', 'topology', 'nodes', 'gflops_per_core'))")"
check "metrics lines labelled" "2 True" \
    "$(python3 -c "import json,sys; l=[json.loads(x) for x in open(sys.argv[1])]; print(len(l), all(x['simulated'] for x in l))" "$d/metrics.jsonl")"
check "hostfile lines" 16 "$(wc -l <"$d/hostfile")"
check "tokens_total" 32768 "$(json "$d/summary.json" "int(d['tokens_total'])")"  # 16 ranks x 1024 x 2 steps
grep -q 'topology="FAT_TREE"' "$d/platform.xml" && pass "  platform.xml is a fat-tree" || fail_check "platform.xml"

# 1b. resources.inter_host = two_level on the same 16 ranks (4 hosts of 4): the same routing and loads as flat
#     (the exchange moves the same rows in two levels), summary.json says which ran, and the 16 ranks' token
#     exchange sends fewer messages, so its simulated time differs from flat's.
d2=$cli_tmp/sim16-two
expect_exit 0 "${sim[@]}" --ranks 16 "${small[@]}" --set resources.inter_host=two_level --out "$d2"
check "summary compute.inter_host" two_level "$(json "$d2/summary.json" "d['compute']['inter_host']")"
loads() { python3 -c "import json,sys; print([l['layers'][0]['expert_load'] for l in map(json.loads, open(sys.argv[1]))])" "$1"; }
if [ "$(loads "$d/metrics.jsonl")" = "$(loads "$d2/metrics.jsonl")" ]; then
    pass "  two_level: every step's expert load equals flat's"
else fail_check "two_level expert loads differ from flat's"; fi
# Bytes through MPI, summed over ranks and steps: the same rows cross hosts either way; two-level adds the hop
# inside the host for rows whose destination has another local index.
flat_off=$(sent_bytes "$d/metrics.jsonl" off_host) two_off=$(sent_bytes "$d2/metrics.jsonl" off_host)
flat_on=$(sent_bytes "$d/metrics.jsonl" on_host) two_on=$(sent_bytes "$d2/metrics.jsonl" on_host)
check "bytes between hosts: two_level = flat" "$flat_off" "$two_off"
if [ "$flat_off" -gt 0 ] && [ "$two_on" -gt "$flat_on" ]; then
    pass "  bytes inside hosts: two_level $two_on > flat $flat_on (between hosts $flat_off)"
else fail_check "bytes: between hosts $flat_off, inside hosts two_level $two_on against flat $flat_on"; fi
flat_x=$(python3 -c "import json,sys; l=[json.loads(x) for x in open(sys.argv[1])][-1]; print(l['time_breakdown_s']['dispatch'])" "$d/metrics.jsonl")
two_x=$(python3 -c "import json,sys; l=[json.loads(x) for x in open(sys.argv[1])][-1]; print(l['time_breakdown_s']['dispatch'])" "$d2/metrics.jsonl")
if [ "$flat_x" != "$two_x" ]; then pass "  two_level: dispatch time $two_x s against flat's $flat_x s"
else fail_check "two_level dispatch time equals flat's ($flat_x s): did it run?"; fi

# 2. torus, dragonfly and a platform file (2 hosts of 2 cores) run too.
for p in torus dragonfly; do
    expect_exit 0 "${sim[@]}" --ranks 16 --platform $p --set model.num_layers=1 --steps 1 --out "$cli_tmp/$p"
done
# A dragonfly of 136 nodes: with 4 routers a chassis it had 5 groups, and SimGrid routes to group g through
# router g of a chassis, so it crashed (as at 1,024 ranks, 4 a node); now 5 routers a chassis, 4 groups.
expect_exit 0 "${sim[@]}" --ranks 136 --ranks-per-node 1 --platform dragonfly --set model.num_layers=1 --steps 1 \
    --tokens-per-rank 16 --set model.num_experts=136 --out "$cli_tmp/dragonfly136"
check "dragonfly of 136 nodes: groups, chassis, routers, nodes" 'topo_parameters="4,1;2,1;5,1;4"' \
    "$(grep -o 'topo_parameters="[^"]*"' "$cli_tmp/dragonfly136/platform.xml")"
cat >"$cli_tmp/two.xml" <<'XML'
<?xml version='1.0'?>
<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">
<platform version="4.1">
  <zone id="AS0" routing="Full">
    <host id="alpha" speed="20Gf" core="2"/>
    <host id="beta" speed="20Gf" core="2"/>
    <link id="wire" bandwidth="10Gbps" latency="2us"/>
    <route src="alpha" dst="beta"><link_ctn id="wire"/></route>
  </zone>
</platform>
XML
expect_exit 0 "${sim[@]}" --ranks 4 --ranks-per-node 2 --platform "$cli_tmp/two.xml" --steps 1 --out "$cli_tmp/file"
check "hosts from the file" "alpha alpha beta beta" "$(tr '\n' ' ' <"$cli_tmp/file/hostfile" | sed 's/ $//')"

# 3. Routing equals a real run: 16 simulated ranks x 128 tokens and 4 real ranks x 512 are the same 2048
#    tokens; aux_free makes step 2's routing depend on step 1's gathered loads.
same=(--set model.num_layers=1 --steps 2 --policy aux_free --energy-source none)
expect_exit 0 "${sim[@]}" --ranks 16 --tokens-per-rank 128 "${same[@]}" --out "$cli_tmp/eq-sim" \
    --dump-output "$cli_tmp/eq-sim/dump.safetensors"
# shellcheck disable=SC2086 # MPIEXEC is a command with its flags
expect_exit 0 $MPIEXEC -n 4 "$EPMOE" run -q --tokens-per-rank 512 "${same[@]}" --out "$cli_tmp/eq-real" \
    --dump-output "$cli_tmp/eq-real/dump.safetensors"
if python3 "$here/compare_routing.py" "$cli_tmp/eq-sim" "$cli_tmp/eq-real" >"$out_file" 2>&1; then
    pass "  simulated routing equals the real run's"; cat "$out_file"
else
    fail_check "simulated routing differs from the real run's"
fi

# 4. The GEMM rate measured at launch when simulate.gflops_per_core is 0, and recorded.
expect_exit 0 "$EPMOE" simulate --set "simulate.binary=$EPMOE_SMPI_BIN" --ranks 2 --steps 1 \
    --set model.num_layers=1 --out "$cli_tmp/measured"
expect_stderr_has "expert GEMM rate on this machine"
check "measured rate recorded" True "$(json "$cli_tmp/measured/summary.json" "d['platform']['gflops_per_core'] > 0")"

# 5. Bad input: one error line naming the key or file, exit 2, no summary.json.
bad() { # bad TEXT ARGS...
    local text=$1
    shift
    expect_exit 2 "${sim[@]}" --out "$cli_tmp/bad" "$@"
    expect_stderr_has "$text"
    expect_one_error_line
    [ ! -e "$cli_tmp/bad/summary.json" ] && pass "  no summary.json" || fail_check "summary.json left behind"
}
bad "simulate.ranks" --ranks 0
bad "simulate.platform" --platform mesh
bad "simulate.bandwidth" --bandwidth 100
bad "energy.source = rapl" --energy-source rapl
bad "unknown config key" --set simulate.bogus=1
bad "need 3" --ranks 6 --ranks-per-node 2 --platform "$cli_tmp/two.xml"
bad "/nonexistent.safetensors" --ranks 2 --input /nonexistent.safetensors
bad "no SMPI build" --set simulate.binary=/nonexistent/epmoe
# shellcheck disable=SC2086
expect_exit 2 $MPIEXEC -n 2 "${sim[@]}" --ranks 2
expect_stderr_has "runs as one process"
finish
