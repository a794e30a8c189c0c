#!/usr/bin/env bash
# Submits launchers/slurm/epmoe.sbatch to a real one-node SLURM cluster (tests/slurm/cluster.sh) and
# checks every job: its final state and exit code, and that its summary.json has `ranks` equal to the
# task count. Launch modes: Open MPI under `srun --mpi=pmix` and under mpirun in the allocation, MPICH
# under `srun --mpi=pmi2` and under mpiexec.mpich, each at 2 and 4 tasks (4 on 2 cores: sbatch -O).
# Also: a job with a bad --set key fails with epmoe's error line (not a time-out), MPICH started by
# `srun --mpi=pmix` (singletons) is refused with exit 2, and a job still running when the controller
# dies and the cluster stops leaves no process behind.
#   EPMOE_OPENMPI=build/epmoe EPMOE_MPICH=build-mpich/epmoe tests/slurm/test_slurm.sh
# Either binary may be left unset to skip its MPI. Needs root. Last line: "N passed, N failed".
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
sbatch_script=$root/launchers/slurm/epmoe.sbatch
job_timeout=${EPMOE_SLURM_JOB_TIMEOUT:-60} # seconds one job may take before it counts as hung
small=(--set model.d_model=48 --set model.d_ff=80 --set model.num_layers=2 --tokens-per-rank 16 --steps 2 -q)

passed=0 failed=0
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }

absolute() { [ -z "$1" ] || echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
openmpi_bin=$(absolute "${EPMOE_OPENMPI:-}")
mpich_bin=$(absolute "${EPMOE_MPICH:-}")
for bin in "$openmpi_bin" "$mpich_bin"; do
    [ -z "$bin" ] || [ -x "$bin" ] || { echo "test_slurm: error: $bin: not an executable" >&2; exit 2; }
done
[ -n "$openmpi_bin$mpich_bin" ] || { echo "test_slurm: error: set EPMOE_OPENMPI and/or EPMOE_MPICH" >&2; exit 2; }

scratch=$(mktemp -d /tmp/epmoe-slurm.XXXXXX)
cluster=$scratch/cluster
stopped=0
# Stops the cluster (once), whatever happened; keeps the scratch folder only if asked to.
cleanup() {
    [ "$stopped" -eq 1 ] || "$here/cluster.sh" stop "$cluster"
    stopped=1
    if [ "${EPMOE_SLURM_KEEP:-0}" = 1 ]; then echo "kept $scratch"; else rm -rf "$scratch"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_s=$SECONDS
if ! "$here/cluster.sh" start "$cluster"; then
    fail "the cluster did not start"
    echo "$passed passed, $failed failed"
    exit 1
fi
pass "cluster up in $((SECONDS - start_s)) s"
export SLURM_CONF=$cluster/slurm.conf
cd "$scratch" || exit 2 # the submit directory: sbatch writes the job output files here

# Prints the value of KEY=VALUE field $2 in `scontrol show job -o` line $1.
field() { grep -o "\b$2=[^ ]*" <<<"$1" | head -n 1 | cut -d= -f2-; }

# wait_job ID: waits (bounded) until job ID ends; sets job_state, job_exit, job_reason. Returns 1 on time-out.
wait_job() {
    local line deadline=$((SECONDS + job_timeout))
    while :; do
        line=$(scontrol show job -o "$1" 2>/dev/null)
        job_state=$(field "$line" JobState) job_exit=$(field "$line" ExitCode) job_reason=$(field "$line" Reason)
        case $job_state in
            COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED) return 0 ;;
        esac
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

# The line that says why job output $1 failed: epmoe's (or a launcher's) error line, else its last line.
error_line() {
    grep -m 1 -E '^(epmoe|epmoe\.sbatch): error: ' "$1" 2>/dev/null ||
        grep -m 1 -iE 'error|abort|fatal' "$1" 2>/dev/null || tail -n 1 "$1" 2>/dev/null || echo "(no output file)"
}

# submit NAME NTASKS ENV... -- SBATCH_ARGS...: submits a job; its id goes to jobs[NAME].
declare -A jobs
submit() {
    local name=$1 ntasks=$2 envs=() id
    shift 2
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    if id=$(env "${envs[@]}" sbatch --parsable -J "$name" -n "$ntasks" -O --time=2 -o "$scratch/$name.out" "$@" 2>&1); then
        jobs[$name]=$id
    else
        fail "$name: sbatch refused the job: $id"
    fi
}

# check NAME NTASKS: the job ended COMPLETED 0:0 and its summary.json has ranks == NTASKS.
check() {
    local name=$1 ntasks=$2 id=${jobs[$1]:-} ranks
    [ -n "$id" ] || return 0
    if ! wait_job "$id"; then
        fail "$name (job $id): still $job_state ($job_reason) after ${job_timeout}s; output: $(tail -n 1 "$scratch/$name.out" 2>/dev/null)"
        scancel "$id" 2>/dev/null
        return 0
    fi
    if [ "$job_state" != COMPLETED ] || [ "$job_exit" != 0:0 ]; then
        fail "$name (job $id): $job_state, exit $job_exit: $(error_line "$scratch/$name.out")"
        return 0
    fi
    ranks=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ranks"])' "$scratch/$name/summary.json" 2>&1)
    if [ "$ranks" = "$ntasks" ]; then
        pass "$name (job $id): COMPLETED 0:0, summary.json ranks=$ranks; $(head -n 1 "$scratch/$name.out")"
    else
        fail "$name (job $id): summary.json ranks=$ranks, expected $ntasks"
    fi
}

# check_fails NAME TEXT: the job ended FAILED with exit 2, and its output has epmoe's error line with TEXT.
check_fails() {
    local name=$1 text=$2 id=${jobs[$1]:-} line
    [ -n "$id" ] || return 0
    if ! wait_job "$id"; then
        fail "$name (job $id): still $job_state after ${job_timeout}s, expected it to fail at once"
        scancel "$id" 2>/dev/null
        return 0
    fi
    line=$(error_line "$scratch/$name.out")
    if [ "$job_state" = FAILED ] && [ "$job_exit" = 2:0 ] && [[ $line == "epmoe: error: "*"$text"* ]]; then
        pass "$name (job $id): FAILED, exit $job_exit, reported as: $line"
    else
        fail "$name (job $id): $job_state, exit $job_exit, '$line'; expected FAILED 2:0 with 'epmoe: error: ...$text'"
    fi
}

# The four launch modes at 2 and 4 tasks; all submitted at once, the scheduler runs them in turn.
modes=()
[ -z "$openmpi_bin" ] || modes+=("openmpi srun $openmpi_bin" "openmpi mpirun $openmpi_bin")
[ -z "$mpich_bin" ] || modes+=("mpich srun $mpich_bin" "mpich mpirun $mpich_bin")
for mode in "${modes[@]}"; do
    read -r mpi launch bin <<<"$mode"
    for n in 2 4; do
        submit "$mpi-$launch-$n" "$n" EPMOE_BIN="$bin" EPMOE_LAUNCH="$launch" -- \
            "$sbatch_script" "${small[@]}" --out "$scratch/$mpi-$launch-$n"
    done
done
# A bad key: the job must fail with epmoe's error line, under srun and under the MPI's own launcher.
bad_bin=${openmpi_bin:-$mpich_bin}
submit bad-key-srun 2 EPMOE_BIN="$bad_bin" EPMOE_LAUNCH=srun -- "$sbatch_script" "${small[@]}" --set model.bogus_key=1
submit bad-key-mpirun 2 EPMOE_BIN="$bad_bin" EPMOE_LAUNCH=mpirun -- "$sbatch_script" "${small[@]}" --set model.bogus_key=1
# MPICH under the wrong PMI starts singletons: epmoe must refuse (SLURM_NTASKS=2, world of 1).
[ -z "$mpich_bin" ] || submit mpich-under-pmix 2 -- --wrap "srun --mpi=pmix $mpich_bin run ${small[*]} --out $scratch/singletons"

for mode in "${modes[@]}"; do
    read -r mpi launch bin <<<"$mode"
    for n in 2 4; do check "$mpi-$launch-$n" "$n"; done
done
check_fails bad-key-srun "model.bogus_key"
check_fails bad-key-mpirun "model.bogus_key"
check_fails mpich-under-pmix "world of 1 rank"
if [ -e "$scratch/singletons/summary.json" ]; then fail "mpich-under-pmix left a summary.json"; fi

# A job still running when the controller dies (KILLed here, by the PID cluster.sh recorded): scancel
# cannot reach it, so stop must find the job's step daemons and tasks itself, and leave nothing.
submit still-running 2 -- --wrap "srun sleep 300"
deadline=$((SECONDS + job_timeout))
until [ "$(field "$(scontrol show job -o "${jobs[still-running]}")" JobState)" = RUNNING ] || [ "$SECONDS" -ge "$deadline" ]; do
    sleep 0.2
done
state=$(field "$(scontrol show job -o "${jobs[still-running]}")" JobState)
if [ "$state" = RUNNING ]; then pass "still-running (job ${jobs[still-running]}): RUNNING, left so for the stop"
else fail "still-running (job ${jobs[still-running]}): $state, expected RUNNING"; fi
sleep 1 # let srun start the tasks
kill -KILL "$(awk '$2 == "slurmctld" { print $1 }' "$cluster/pids")" # a crash: no shutdown
stop_s=$SECONDS
"$here/cluster.sh" stop "$cluster"
stopped=1
# Everything of the cluster still alive (its daemons, step daemons, job processes), with its command line.
left=$("$here/cluster.sh" procs "$cluster" | while read -r pid; do
    echo "$pid $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")"; done)
if [ -z "$left" ]; then pass "cluster stopped in $((SECONDS - stop_s)) s, no process left"; else fail "left running: $left"; fi

echo "slurm test took $((SECONDS - start_s)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
