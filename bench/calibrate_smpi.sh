#!/usr/bin/env bash
# Calibration check of `epmoe simulate` (issue 8): real `epmoe run` at 2 and 4 ranks on this machine against
# the same runs simulated on a platform describing this machine, and writes bench/CALIBRATION.md.
#   the platform: one host at the expert-GEMM rate `epmoe simulate` measures for one rank alone, with as many
#   cores as this machine's cores amount to when all run experts at once (below), its ranks talking over a
#   loopback link of LOOPBACK_BW and LOOPBACK_LAT;
#   the runs: the default model (4 layers, 8 experts, 1024 tokens per rank), STEPS steps, energy off.
# Compared: step time p50 and dispatch + combine per step (mean over ranks and steps, after step 0).
# Usage: bench/calibrate_smpi.sh   Environment: EPMOE (default build/epmoe; build-smpi/epmoe beside it),
# OUT (default /tmp/epmoe-calibrate), STEPS (5), LOOPBACK_BW (default 3.3GBps), LOOPBACK_LAT (default 1us).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
EPMOE=${EPMOE:-$root/build/epmoe}
OUT=${OUT:-/tmp/epmoe-calibrate}
STEPS=${STEPS:-5}
LOOPBACK_BW=${LOOPBACK_BW:-3.3GBps}
LOOPBACK_LAT=${LOOPBACK_LAT:-1us}
cores=$(nproc)
rm -rf "$OUT" && mkdir -p "$OUT"
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
common=(-q --steps "$STEPS" --energy-source none)

# The expert-GEMM rate, measured by `epmoe simulate` itself on the default model's expert shape (and the rows
# an expert gets at `cores` ranks): by one rank alone (one rank a node), and by one rank per core at once.
# A host of `cores` cores at the alone rate would give every rank that rate at once too; when the cores share their execution units (SMT siblings, a VM's vCPUs
# on one physical core) the rate at once is lower, so the host gets the cores that the measured total
# throughput at once amounts to: round(cores x rate at once / rate alone), at least 1.
rate() { # $1 ranks a node
    "$EPMOE" simulate "${common[@]}" --ranks "$cores" --ranks-per-node "$1" --gflops-per-core 0 --out "$OUT/rate-$1" \
        >"$OUT/rate-$1.log" 2>&1
    python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['platform']['gflops_per_core'])" \
        "$OUT/rate-$1/summary.json"
}
rate_alone=$(rate 1)
rate_all=$(rate "$cores")
host_cores=$(python3 -c "import sys; c, a, b = map(float, sys.argv[1:]); print(max(1, round(c * b / a)))" \
    "$cores" "$rate_alone" "$rate_all")

cat >"$OUT/vm.xml" <<EOF
<?xml version='1.0'?>
<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">
<platform version="4.1">
  <zone id="vm" routing="Full">
    <host id="vm" speed="${rate_alone}Gf" core="$host_cores"/>
    <link id="loopback" bandwidth="$LOOPBACK_BW" latency="$LOOPBACK_LAT" sharing_policy="FATPIPE"/>
    <route src="vm" dst="vm"><link_ctn id="loopback"/></route>
  </zone>
</platform>
EOF

for n in 2 4; do
    mpiexec --oversubscribe -n "$n" "$EPMOE" run "${common[@]}" --out "$OUT/real-$n" >"$OUT/real-$n.log" 2>&1
    "$EPMOE" simulate "${common[@]}" --ranks "$n" --ranks-per-node "$n" --platform "$OUT/vm.xml" \
        --gflops-per-core "$rate_alone" --out "$OUT/sim-$n" >"$OUT/sim-$n.log" 2>&1
done

python3 - "$OUT" "$rate_alone" "$rate_all" "$cores" "$host_cores" "$LOOPBACK_BW" "$LOOPBACK_LAT" "$(cut -d' ' -f1-3 /proc/loadavg)" "$here/CALIBRATION.md" <<'EOF'
import json, os, statistics, sys
out, alone, at_once, cores, host_cores, bw, lat, load, md_path = sys.argv[1:]

def figures(d):
    lines = [json.loads(x) for x in open(os.path.join(d, "metrics.jsonl")) if x.strip()][1:]  # step 0 warms up
    step = statistics.median(l["step_time_s"] for l in lines)
    a2a = statistics.mean(statistics.mean(d_ + c for d_, c in zip(l["per_rank"]["dispatch_s"], l["per_rank"]["combine_s"]))
                          for l in lines)
    return step, a2a

md = ["# `epmoe simulate` against real runs on this machine (`bench/calibrate_smpi.sh`)", "",
      f"This machine has {cores} cores. The expert-GEMM rate `epmoe simulate` measured: {float(alone):.2f} GFLOP/s "
      f"for one rank alone, {float(at_once):.2f} per rank with {cores} ranks at once, so its cores share their "
      f"execution units as {host_cores} core{'s' if int(host_cores) > 1 else ''} of the alone rate. Platform: one "
      f"host with {host_cores} core{'s' if int(host_cores) > 1 else ''} at {float(alone):.2f} GFLOP/s, loopback "
      f"{bw}, {lat}. Default model (4 layers, 8 experts, 1024 tokens per rank); figures after "
      f"step 0. Load average when done: {load}.", "",
      "| ranks | step p50 real | simulated | sim/real | dispatch+combine per step real | simulated | sim/real |",
      "|---:|---:|---:|---:|---:|---:|---:|"]
for n in (2, 4):
    (rs, ra), (ss, sa) = figures(os.path.join(out, f"real-{n}")), figures(os.path.join(out, f"sim-{n}"))
    md.append(f"| {n}{f' ({cores} cores)' if n > int(cores) else ''} | {rs:.3f} s | {ss:.3f} s | {ss / rs:.2f} | "
              f"{ra:.3f} s ({100 * ra / rs:.1f} %) | {sa:.3f} s ({100 * sa / ss:.1f} %) | {sa / ra:.2f} |")
open(md_path, "w").write("\n".join(md) + "\n")
print("\n".join(md))
EOF
