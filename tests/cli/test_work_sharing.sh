#!/usr/bin/env bash
# resources.work_sharing end to end under this build's MPI: with the shared-memory exchange, the ranks of a host
# taking row blocks of each other's experts (host) give the bits of each expert on its owner (none) and of the MPI
# exchange, at 4 ranks on skewed tokens whose experts run in several row blocks (and under MPICH with the ranks on
# two "hosts": the rows from the other host are run from the owner's segment by whoever takes them); every routed
# row runs exactly once (metrics' per_rank.rows_run); summary.json says which ran; host without shm exits 2.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}" "${MPIEXEC:?set MPIEXEC to mpiexec and its flags}"
read -r -a mpiexec <<<"$MPIEXEC"
# 4 x 512 tokens, top-2 over 8 experts on a Zipf workload: experts of ~100 to ~900 rows (blocks of up to 512).
runs=(run --set model.d_model=48 --set model.d_ff=80 --set model.num_layers=2 --set model.num_experts=8 -q
      --tokens-per-rank 512 --set workload.skew=1.5 --set routing.capacity_factor=1.5)
modes=("mpi:--set resources.exchange=mpi"
       "none:--set resources.exchange=shm --set resources.work_sharing=none"
       "host:--set resources.exchange=shm --set resources.work_sharing=host")
launches=("${mpiexec[*]} -np 4")
[ "${EPMOE_MPI_FLAVOR:-}" = mpich ] && launches+=("mpiexec.mpich -launcher fork -hosts localhost:2,127.0.0.1:2 -n 4")

# rows_run of a results directory: each rank's sum over steps, comma-separated.
rows_run() {
    python3 -c "import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
print(','.join(str(int(sum(l['per_rank']['rows_run'][r] for l in lines))) for r in range(4)))" "$1/metrics.jsonl"
}

for i in "${!launches[@]}"; do
    read -r -a launch <<<"${launches[$i]}"
    for mode in "${modes[@]}"; do
        read -r -a set <<<"${mode#*:}"
        expect_exit 0 "${launch[@]}" "$EPMOE" "${runs[@]}" --steps 3 "${set[@]}" --out "$cli_tmp/w$i-${mode%%:*}" \
            --dump-output "$cli_tmp/w$i-${mode%%:*}.st"
    done
    for m in none host; do
        if cmp -s "$cli_tmp/w$i-mpi.st" "$cli_tmp/w$i-$m.st"; then pass "  ${launches[$i]}: work_sharing $m gives mpi's bits"
        else fail_check "${launches[$i]}: work_sharing $m and the mpi exchange differ"; fi
    done
    owner=$(rows_run "$cli_tmp/w$i-mpi") none=$(rows_run "$cli_tmp/w$i-none") host=$(rows_run "$cli_tmp/w$i-host")
    if [ "$owner" = "$none" ]; then pass "  work_sharing none: each rank runs its own experts' rows ($none)"
    else fail_check "rows_run: none $none, owners' rows $owner"; fi
    if [ $((${host//,/+})) = $((${owner//,/+})) ] && [ $((${owner//,/+})) -gt 0 ]; then
        pass "  work_sharing host: every routed row runs once ($host, owners' $owner)"
    else fail_check "rows_run: host $host, owners' rows $owner"; fi
done
if python3 -c "import json, sys
c = json.load(open(sys.argv[1]))['compute']
assert c['work_sharing'] == 'host' and c['exchange'] == 'shm', c" "$cli_tmp/w0-host/summary.json" &&
    python3 -c "import json, sys
assert json.load(open(sys.argv[1]))['compute']['work_sharing'] == 'none'" "$cli_tmp/w0-mpi/summary.json"; then
    pass "  summary.json compute.work_sharing: host with shm, none with mpi"
else fail_check "summary.json compute.work_sharing"; fi

# host needs the shared-memory exchange: an error naming the key where the exchange is (or resolves to) mpi.
expect_exit 2 "$EPMOE" "${runs[@]}" --steps 1 --set resources.exchange=mpi --set resources.work_sharing=host \
    --out "$cli_tmp/bad"
expect_stderr_has "config key resources.work_sharing = \"host\""
expect_one_error_line
expect_exit 2 "$EPMOE" "${runs[@]}" --steps 1 --set compute.overlap_chunks=2 --set resources.work_sharing=host \
    --out "$cli_tmp/bad"
expect_stderr_has "config key resources.work_sharing = \"host\": needs the shared-memory exchange"
expect_one_error_line
expect_exit 2 "$EPMOE" "${runs[@]}" --steps 1 --set resources.work_sharing=steal --out "$cli_tmp/bad"
expect_stderr_has "resources.work_sharing"
if [ ! -e "$cli_tmp/bad/summary.json" ]; then pass "  no summary.json after a bad value"; else fail_check "summary.json left"; fi

# A /dev/shm too small for the host's experts (a container's, say; here a 16 MiB tmpfs in a private mount namespace,
# where unshare may run): auto runs without sharing and says so, host exits 2 naming the key; neither faults.
big=(run --set model.d_model=256 --set model.d_ff=1024 --set model.num_experts=8 --set model.num_layers=2 --steps 1
     --tokens-per-rank 64)
if unshare -m sh -c 'mount -t tmpfs -o size=16M tmpfs /dev/shm' 2>/dev/null; then
    in_small_shm=(unshare -m sh -c 'mount -t tmpfs -o size=16M tmpfs /dev/shm && exec "$@"' sh)
    expect_exit 0 "${in_small_shm[@]}" "${mpiexec[@]}" -np 2 "$EPMOE" "${big[@]}" --out "$cli_tmp/small-auto"
    expect_stderr_has "epmoe: note: resources.work_sharing = auto runs as none: the experts of host $(hostname) take 48 MiB"
    if python3 -c "import json, sys
assert json.load(open(sys.argv[1]))['compute']['work_sharing'] == 'none'" "$cli_tmp/small-auto/summary.json"; then
        pass "  summary.json compute.work_sharing = none"
    else fail_check "summary.json compute.work_sharing after the fallback"; fi
    expect_exit 2 "${in_small_shm[@]}" "${mpiexec[@]}" -np 2 "$EPMOE" "${big[@]}" --set resources.work_sharing=host \
        --out "$cli_tmp/small-host"
    expect_stderr_has "config key resources.work_sharing = \"host\": the experts of host $(hostname) take 48 MiB"
    expect_one_error_line
else
    pass "  (skipped: no private mount namespace here for a small /dev/shm)"
fi
finish
