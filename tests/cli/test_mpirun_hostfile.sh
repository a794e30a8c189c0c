#!/usr/bin/env bash
# launchers/mpirun.sh for real with a hostfile, under this build's MPI: hostfiles/localhost (Open MPI's
# `host slots=N`) and the same host in MPICH's `host:N`, at the hostfile's slots (no -n) and past them
# (-n 4 on 2 slots: oversubscribed). Each run's summary.json must count the ranks asked for.
# shellcheck source=tests/cli/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${EPMOE:?set EPMOE to the epmoe binary}"

mpirun=$EPMOE_SOURCE_DIR/launchers/mpirun.sh
small=(--set model.d_model=48 --set model.d_ff=80 --set model.num_layers=2 --tokens-per-rank 16 --steps 2 -q)
printf '# MPICH syntax\nlocalhost:2\n' >"$cli_tmp/mpich.hosts"

# expect_ranks N DIR: DIR/summary.json says the run had N ranks.
expect_ranks() {
    local got
    got=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ranks"])' "$2/summary.json" 2>&1)
    if [ "$got" = "$1" ]; then pass "  summary.json ranks=$1"; else fail_check "summary.json ranks=$got, expected $1"; fi
}

for hosts in "$EPMOE_SOURCE_DIR/hostfiles/localhost" "$cli_tmp/mpich.hosts"; do
    name=$(basename "$hosts")
    slots=$(sed -nE 's/^localhost( slots=|:)([0-9]+).*/\2/p' "$hosts")
    expect_exit 0 "$mpirun" --hostfile "$hosts" "$EPMOE" run "${small[@]}" --out "$cli_tmp/$name-slots"
    expect_ranks "$slots" "$cli_tmp/$name-slots"
    expect_exit 0 "$mpirun" --hostfile "$hosts" -n 4 -- "$EPMOE" run "${small[@]}" --out "$cli_tmp/$name-4"
    expect_ranks 4 "$cli_tmp/$name-4"
done

# A bad key through the launcher: epmoe's exit code 2 and its error line come through unchanged.
expect_exit 2 "$mpirun" --hostfile "$cli_tmp/mpich.hosts" "$EPMOE" run "${small[@]}" --set model.bogus_key=1
expect_stderr_has "epmoe: error: "
expect_stderr_has "model.bogus_key"

finish
