#!/usr/bin/env bash
# The launchers' argument handling, without running jobs: the flags launchers/mpirun.sh --dry-run
# chooses for both MPIs and both hostfile syntaxes, exit 2 with one error line on bad arguments,
# --help of test.sh and quickstart.sh, and the SLURM script's choice of launcher (with a stand-in srun).
# shellcheck source=tests/cli/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

launchers=$EPMOE_SOURCE_DIR/launchers
mpirun=$launchers/mpirun.sh
sbatch=$launchers/slurm/epmoe.sbatch
export OPENBLAS_NUM_THREADS=1  # the value the launchers are expected to pass on

# --- every script parses
for script in "$launchers"/*.sh "$launchers"/lib/*.sh "$sbatch" "$EPMOE_SOURCE_DIR/.ci/run"; do
    expect_exit 0 bash -n "$script"
done

# --- hostfiles: the same two hosts in each syntax, with comments and blank lines
printf '# Open MPI syntax\nnodeA slots=2\n\nnodeB slots=3 max_slots=4   # comment\n' >"$cli_tmp/ompi.hosts"
printf 'nodeA:2\n   # MPICH syntax\nnodeB:3\n' >"$cli_tmp/mpich.hosts"
for syntax in ompi mpich; do
    hosts=$cli_tmp/$syntax.hosts
    expect_exit 0 "$mpirun" --dry-run --mpi openmpi --hostfile "$hosts" -- /bin/true
    expect_stdout_has "mpirun.openmpi -n 5 "  # the hostfile's slots
    expect_stdout_has "--bind-to core -x OPENBLAS_NUM_THREADS=1 --hostfile /tmp/"
    expect_stdout_lacks "--oversubscribe"
    expect_stdout_has "#   nodeA slots=2"
    expect_stdout_has "#   nodeB slots=3"
    expect_exit 0 "$mpirun" --dry-run --mpi=mpich --hostfile="$hosts" -n 8 /bin/true
    expect_stdout_has "mpiexec.mpich -n 8 -bind-to none -genv OPENBLAS_NUM_THREADS 1 -f /tmp/"
    expect_stdout_has "#   nodeA:2"
    expect_stdout_has "#   nodeB:3"
    expect_stdout_lacks "slots="
done
expect_exit 0 "$mpirun" --dry-run --mpi mpich --hostfile "$EPMOE_SOURCE_DIR/hostfiles/cluster.example" /bin/true
expect_stdout_has "mpiexec.mpich -n 64 "
expect_exit 0 "$mpirun" --dry-run --mpi openmpi --hostfile "$EPMOE_SOURCE_DIR/hostfiles/localhost" /bin/true
expect_stdout_has "#   localhost slots="

# --- ranks against this machine: oversubscribe and unbind past the cores; root flag only as root
expect_exit 0 "$mpirun" --dry-run --mpi openmpi -n 100000 /bin/true
expect_stdout_has "--oversubscribe"
expect_stdout_has "--bind-to none"
expect_exit 0 "$mpirun" --dry-run --mpi openmpi -n 1 -- /bin/true --flag value
expect_stdout_has "mpirun.openmpi -n 1 "
expect_stdout_has "--bind-to core"
expect_stdout_lacks "--oversubscribe"
expect_stdout_has "/bin/true --flag value"
if [ "$(id -u)" -eq 0 ]; then expect_stdout_has "--allow-run-as-root"; else expect_stdout_lacks "--allow-run-as-root"; fi
expect_exit 0 "$mpirun" --dry-run --mpi mpich -np 1 /bin/true
expect_stdout_has "mpiexec.mpich -n 1 -bind-to core -genv OPENBLAS_NUM_THREADS 1 /bin/true"
expect_stdout_lacks "allow-run-as-root"

# --- the MPI is read from the built epmoe (ldd)
if [ -n "${EPMOE:-}" ] && [ -n "${EPMOE_MPI_FLAVOR:-}" ]; then
    expect_exit 0 "$mpirun" --dry-run -n 2 "$EPMOE" info
    if [ "$EPMOE_MPI_FLAVOR" = openmpi ]; then expect_stdout_has "mpirun.openmpi -n 2"; else expect_stdout_has "mpiexec.mpich -n 2"; fi
fi

# --- bad arguments: exit 2 and one error line
printf 'nodeA slots=two\n' >"$cli_tmp/bad.hosts"
printf 'nodeA cpus=2\n' >"$cli_tmp/badfield.hosts"
printf '# nothing\n\n' >"$cli_tmp/empty.hosts"
bad_args=(
    "-n 0 /bin/true" "-n x /bin/true" "-n" "--bogus /bin/true" "" "--mpi lam /bin/true"
    "--hostfile $cli_tmp/missing.hosts /bin/true" "/bin/true" "$cli_tmp/no-such-program"
    "--mpi mpich --hostfile $cli_tmp/bad.hosts /bin/true" "--mpi mpich --hostfile $cli_tmp/badfield.hosts /bin/true"
    "--mpi mpich --hostfile $cli_tmp/empty.hosts /bin/true"
)
for args in "${bad_args[@]}"; do
    # shellcheck disable=SC2086 # split the argument list on purpose
    expect_exit 2 "$mpirun" --dry-run $args
    expect_stderr_has "epmoe-mpirun: error: "
done
expect_exit 2 "$mpirun" --mpi mpich --hostfile "$cli_tmp/bad.hosts" /bin/true
expect_stderr_has "bad.hosts:1: bad 'slots=two'"

# --- test.sh and quickstart.sh: help, and errors before anything is installed or built
expect_exit 0 "$launchers/test.sh" --help
expect_stdout_has "usage: launchers/test.sh"
expect_exit 2 "$launchers/test.sh" --only nosuch
expect_stderr_has "epmoe-test: error: "
expect_exit 2 "$launchers/test.sh" --bogus
expect_stderr_has "epmoe-test: error: "
expect_exit 0 "$launchers/quickstart.sh" -h
expect_stdout_has "usage: launchers/quickstart.sh"
expect_exit 2 "$launchers/quickstart.sh" --ranks 0
expect_stderr_has "epmoe-quickstart: error: "

# --- SLURM: srun with the PMI each MPI speaks, else the MPI's own launcher (stand-in srun lists plugins)
mkdir -p "$cli_tmp/bin"
cat >"$cli_tmp/bin/srun" <<'SRUN'
#!/bin/sh
[ "$1" = --mpi=list ] && printf 'MPI plugin types are...\n\tnone\n' && printf '\t%s\n' $FAKE_PMI
SRUN
chmod +x "$cli_tmp/bin/srun"
slurm_env=(env "PATH=$cli_tmp/bin:$PATH" SLURM_SUBMIT_DIR="$cli_tmp" SLURM_NTASKS=4 SLURM_CPUS_PER_TASK=1
    SLURM_JOB_NUM_NODES=1 EPMOE_DRY_RUN=1)
expect_exit 0 "${slurm_env[@]}" FAKE_PMI="pmix pmix_v4" EPMOE_MPI=openmpi bash "$sbatch" --steps 2
expect_stdout_has "srun --mpi=pmix --cpu-bind=cores --cpus-per-task=1 build/epmoe run --steps 2"
expect_exit 0 "${slurm_env[@]}" FAKE_PMI="pmix" EPMOE_MPI=mpich bash "$sbatch"
expect_stdout_has "mpiexec.mpich -n 4 "  # never MPICH under --mpi=pmix
expect_exit 0 "${slurm_env[@]}" FAKE_PMI="pmi2 pmix" EPMOE_MPI=mpich bash "$sbatch"
expect_stdout_has "srun --mpi=pmi2 --cpu-bind=cores"
expect_exit 0 "${slurm_env[@]}" FAKE_PMI="pmi2" EPMOE_MPI=openmpi bash "$sbatch"
expect_stdout_has "mpirun.openmpi -n 4 "  # Open MPI has no PMI-2
expect_exit 0 "${slurm_env[@]}" FAKE_PMI="pmix" EPMOE_MPI=openmpi EPMOE_LAUNCH=mpirun bash "$sbatch"
expect_stdout_has "mpirun.openmpi -n 4 "
expect_exit 2 "${slurm_env[@]}" EPMOE_MPI=openmpi EPMOE_LAUNCH=bogus bash "$sbatch"
expect_stderr_has "epmoe.sbatch: error: "

finish
