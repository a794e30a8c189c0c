#!/usr/bin/env bash
# Runs epmoe's whole test suite on a Debian 12 machine: installs what is missing, then builds and tests
# three configurations, each in its own folder:
#   openmpi  build/        Open MPI, -Werror, every test (unit, mpi, cli), and bench/ with its smoke tests
#   mpich    build-mpich/  MPICH, -Werror, every test
#   asan     build-asan/   Open MPI, AddressSanitizer + UBSan, unit tests only
# then the SMPI step: build-smpi/epmoe (SimGrid's smpicxx, only that target) and `epmoe simulate` with the
# openmpi build (tests/smpi/test_simulate.sh); then, as root, the SLURM step: launchers/slurm/epmoe.sbatch
# submitted to a private one-node cluster with the epmoe binaries of openmpi and mpich (tests/slurm/test_slurm.sh).
# Ends with one line "N passed, N failed" (totals over the configurations run) and exits non-zero if a
# test or a build failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
EPMOE_ROOT=$(cd "$here/.." && pwd)
# shellcheck source=launchers/lib/deps.sh
source "$here/lib/deps.sh"
# shellcheck source=launchers/lib/build.sh
source "$here/lib/build.sh"

usage() {
    cat <<'EOF'
usage: launchers/test.sh [--only openmpi|mpich|asan]... [--no-install] [--no-smpi] [--no-slurm] [-- CTEST_ARGS...]

Installs missing Debian packages (apt-get, only when something is missing), then builds and tests:
  openmpi  build/        Open MPI, -DEPMOE_WERROR=ON, all tests, bench/ built with its smoke tests
  mpich    build-mpich/  MPICH, -DEPMOE_WERROR=ON, all tests
  asan     build-asan/   Open MPI, -DEPMOE_SANITIZE=ON, unit tests only (ctest -L unit)
  smpi     (after openmpi) build-smpi/epmoe with SimGrid's smpicxx, then `epmoe simulate` at 2-16 simulated
           ranks against real 4-rank runs (tests/smpi/test_simulate.sh)
  slurm    (as root, after openmpi and/or mpich) epmoe.sbatch on a private one-node SLURM cluster,
           with the binaries just built (tests/slurm/test_slurm.sh)

options:
  --only NAME    run only this configuration (repeatable; default: all three)
  --no-install   do not run apt-get, only warn about missing packages
  --no-smpi      skip the SMPI step; it is also skipped when CTEST_ARGS are given
  --no-slurm     skip the SLURM step (and its packages); it is also skipped when CTEST_ARGS are given
  -h, --help     this help
  -- ARGS        pass ARGS to every ctest run, e.g. `-- -R config` or `-- -L mpi`

The last line printed is "N passed, N failed"; the exit code is non-zero if anything failed.
EOF
}

die() {
    echo "epmoe-test: error: $*" >&2
    exit 2
}

only=()
install=1
slurm=1
smpi=1
ctest_args=()
while [ $# -gt 0 ]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --no-install) install=0 ;;
        --no-slurm) slurm=0 ;;
        --no-smpi) smpi=0 ;;
        --only | --only=*)
            if [ "$1" = --only ]; then
                [ $# -ge 2 ] || die "--only needs a configuration: openmpi, mpich or asan"
                value=$2; shift
            else
                value=${1#--only=}
            fi
            case $value in
                openmpi | mpich | asan) only+=("$value") ;;
                *) die "--only $value: unknown configuration (expected openmpi, mpich or asan)" ;;
            esac
            ;;
        --) shift; ctest_args=("$@"); break ;;
        *) die "unknown argument '$1' (see launchers/test.sh --help; ctest arguments go after --)" ;;
    esac
    shift
done
[ "${#only[@]}" -gt 0 ] || only=(openmpi mpich asan)
# The SLURM step runs as root (slurmd starts the jobs), after openmpi or mpich, with no ctest filter.
if [ "$slurm" -eq 1 ] && { [ "$(id -u)" -ne 0 ] || [ "${#ctest_args[@]}" -gt 0 ] ||
    [[ " ${only[*]} " != *" openmpi "* && " ${only[*]} " != *" mpich "* ]]; }; then
    slurm=0
fi
[ "$slurm" -eq 0 ] || EPMOE_DEPS+=("${EPMOE_SLURM_DEPS[@]}")
# The SMPI step needs the openmpi build's epmoe (the launcher side of `epmoe simulate`), and no ctest filter.
if [ "${#ctest_args[@]}" -gt 0 ] || [[ " ${only[*]} " != *" openmpi "* ]]; then smpi=0; fi

if [ "$install" -eq 1 ]; then
    epmoe_install_deps epmoe-test
else
    epmoe_warn_missing_deps epmoe-test
fi

# One BLAS thread per rank, and ranks that yield the core when idle: the tests oversubscribe 2 cores.
export OPENBLAS_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1
jobs=$(nproc)
log=$(mktemp /tmp/epmoe-ctest.XXXXXX)
trap 'rm -f "$log"' EXIT

total_passed=0
total_failed=0
summaries=()
declare -A built=() # configuration name -> its epmoe binary, once it built

# Builds and tests one configuration. $1 name, $2 folder, $3 extra ctest args (a string), $4 the build
# target ("all", or only what the tests of $3 need), rest: cmake -D.
run_config() {
    local name=$1 dir=$2 label_args=$3 target=$4 line rc failed total
    shift 4
    echo
    echo "=== $name: $dir/ ==="
    local start=$SECONDS
    if ! epmoe_configure "$dir" "$@" || ! cmake --build "$EPMOE_ROOT/$dir" -j "$jobs" --target "$target"; then
        summaries+=("$name ($dir/): BUILD FAILED, no tests run ($((SECONDS - start)) s)")
        total_failed=$((total_failed + 1))
        return 0
    fi
    built[$name]=$EPMOE_ROOT/$dir/epmoe
    # shellcheck disable=SC2086 # label_args is a word list on purpose
    ctest --test-dir "$EPMOE_ROOT/$dir" --output-on-failure -j "$jobs" $label_args "${ctest_args[@]}" 2>&1 |
        tee "$log" && rc=0 || rc=${PIPESTATUS[0]}
    line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
    if [ -n "$line" ]; then
        failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
        total=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line")
        total_passed=$((total_passed + total - failed))
        total_failed=$((total_failed + failed))
        # ctest failed without a failed test (e.g. a crash): count it, so the totals agree with the exit.
        if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then total_failed=$((total_failed + 1)); fi
    elif grep -q 'No tests were found' "$log"; then
        line="no tests were found"
        if [ "$rc" -ne 0 ]; then total_failed=$((total_failed + 1)); fi
    else
        line="ctest exited $rc without a summary"
        total_failed=$((total_failed + 1))
    fi
    summaries+=("$name ($dir/): $line ($((SECONDS - start)) s)")
}

# Counts a test script's last "N passed, N failed" line (in $log) into the totals, and adds its summary line.
# $1 the name in the summary, $2 the script's exit code, $3 the step's start ($SECONDS).
tally_script() {
    local name=$1 rc=$2 start=$3 line passed failed
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)
    if [ -n "$line" ]; then
        read -r passed _ failed _ <<<"$line"
        total_passed=$((total_passed + passed))
        total_failed=$((total_failed + failed))
        if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then total_failed=$((total_failed + 1)); fi
    else
        line="exited $rc without a summary"
        total_failed=$((total_failed + 1))
    fi
    summaries+=("$name: $line ($((SECONDS - start)) s)")
}

# The SLURM step with the binaries built above; its last line "N passed, N failed" counts in the totals.
run_slurm() {
    local start=$SECONDS rc
    echo
    echo "=== slurm: tests/slurm/test_slurm.sh ==="
    timeout -k 10 300 env EPMOE_OPENMPI="${built[openmpi]:-}" EPMOE_MPICH="${built[mpich]:-}" \
        bash "$EPMOE_ROOT/tests/slurm/test_slurm.sh" 2>&1 | tee "$log" && rc=0 || rc=${PIPESTATUS[0]}
    tally_script "slurm (tests/slurm/)" "$rc" "$start"
}

# The SMPI step: builds build-smpi/epmoe (only that target), then runs tests/smpi/test_simulate.sh with the
# openmpi binary; its last line "N passed, N failed" counts in the totals.
run_smpi() {
    local start=$SECONDS rc mpiexec="/usr/bin/mpiexec.openmpi --oversubscribe"
    echo
    echo "=== smpi: build-smpi/, tests/smpi/test_simulate.sh ==="
    [ "$(id -u)" -ne 0 ] || mpiexec+=" --allow-run-as-root"
    if ! epmoe_configure build-smpi -DEPMOE_SMPI=ON -DEPMOE_WERROR=ON ||
        ! cmake --build "$EPMOE_ROOT/build-smpi" -j "$jobs" --target epmoe; then
        summaries+=("smpi (build-smpi/): BUILD FAILED, no tests run ($((SECONDS - start)) s)")
        total_failed=$((total_failed + 1))
        return 0
    fi
    timeout -k 10 600 env EPMOE="${built[openmpi]}" EPMOE_SMPI_BIN="$EPMOE_ROOT/build-smpi/epmoe" MPIEXEC="$mpiexec" \
        bash "$EPMOE_ROOT/tests/smpi/test_simulate.sh" 2>&1 | tee "$log" && rc=0 || rc=${PIPESTATUS[0]}
    tally_script "smpi (build-smpi/)" "$rc" "$start"
}

# In a fixed order, each at most once, whatever the order of --only.
for name in openmpi mpich asan; do
    [[ " ${only[*]} " == *" $name "* ]] || continue
    case $name in
        openmpi) run_config openmpi build "" all "${EPMOE_CMAKE_OPENMPI[@]}" -DEPMOE_WERROR=ON -DEPMOE_SANITIZE=OFF \
            -DEPMOE_BUILD_BENCH=ON ;;
        mpich) run_config mpich build-mpich "" all "${EPMOE_CMAKE_MPICH[@]}" -DEPMOE_WERROR=ON -DEPMOE_SANITIZE=OFF ;;
        # Only the unit tests run under the sanitizers, so only their binary is built.
        asan) run_config asan build-asan "-L unit" epmoe_unit_tests "${EPMOE_CMAKE_OPENMPI[@]}" -DEPMOE_SANITIZE=ON ;;
    esac
done

if [ "$smpi" -eq 1 ] && [ -n "${built[openmpi]:-}" ]; then
    run_smpi
fi
if [ "$slurm" -eq 1 ] && [ -n "${built[openmpi]:-}${built[mpich]:-}" ]; then
    run_slurm
fi

echo
echo "=== summary ==="
printf '%s\n' "${summaries[@]}"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
