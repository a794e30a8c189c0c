# shellcheck shell=bash
# Helpers shared by the CLI tests (tests/cli/test_*.sh). Source it, then:
#   expect_exit 2 "$EPMOE" run --bogus   # runs the command (stdin /dev/null, 120 s limit); passes if it exits 2
#   expect_stderr_has "epmoe: error:"    # checks the output of the last expect_exit
#   finish                               # prints "N passed, N failed"; exits 1 if any check failed
# The last command's output stays in $out_file and $err_file; $cli_tmp is a scratch folder.
# CTest sets EPMOE, MPIEXEC, EPMOE_MPI_FLAVOR and EPMOE_SOURCE_DIR (the latter defaults to this repo).
set -uo pipefail

EPMOE_SOURCE_DIR=${EPMOE_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
cli_tmp=$(mktemp -d /tmp/epmoe-cli.XXXXXX)
trap 'rm -rf "$cli_tmp"' EXIT
out_file=$cli_tmp/stdout
err_file=$cli_tmp/stderr
cli_passed=0
cli_failed=0
cli_last=""

# Records a passed check.
pass() {
    cli_passed=$((cli_passed + 1))
    echo "ok   $1"
}

# Records a failed check and shows the tail of the last command's output.
fail_check() {
    cli_failed=$((cli_failed + 1))
    echo "FAIL $1"
    echo "     command: $cli_last"
    [ -s "$out_file" ] && tail -n 15 "$out_file" | sed 's/^/     stdout| /'
    [ -s "$err_file" ] && tail -n 15 "$err_file" | sed 's/^/     stderr| /'
    return 0
}

# expect_exit CODE CMD ARGS...: runs CMD; passes if it exits CODE (124 means it hit the time limit).
expect_exit() {
    local want=$1 code
    shift
    cli_last="$*"
    timeout -k 5 "${CLI_TIMEOUT:-120}" "$@" >"$out_file" 2>"$err_file" </dev/null
    code=$?
    if [ "$code" -eq "$want" ]; then pass "exit $want: $cli_last"; else fail_check "exit $code, expected $want"; fi
}

# expect_stdout_has / expect_stderr_has / expect_stdout_lacks TEXT: fixed-string checks on the last output.
expect_stdout_has() { if grep -qF -- "$1" "$out_file"; then pass "  stdout has '$1'"; else fail_check "stdout lacks '$1'"; fi; }
expect_stderr_has() { if grep -qF -- "$1" "$err_file"; then pass "  stderr has '$1'"; else fail_check "stderr lacks '$1'"; fi; }
expect_stdout_lacks() { if grep -qF -- "$1" "$out_file"; then fail_check "stdout has '$1'"; else pass "  stdout lacks '$1'"; fi; }

# expect_one_error_line: the last command's stderr has exactly one "epmoe: error:" line (rank 0's only).
# sent_bytes METRICS on_host|off_host: per_rank.sent_bytes_<which> of a metrics.jsonl, summed over ranks and lines.
sent_bytes() {
    python3 -c "import json,sys; print(sum(sum(l['per_rank']['sent_bytes_'+sys.argv[2]]) for l in map(json.loads, open(sys.argv[1]))))" "$1" "$2"
}

expect_one_error_line() {
    local n
    n=$(grep -c "^epmoe: error:" "$err_file")
    if [ "$n" -eq 1 ]; then pass "  one error line"; else fail_check "$n error lines, expected 1"; fi
}

# Prints the totals as the last line and exits non-zero if any check failed.
finish() {
    echo "$cli_passed passed, $cli_failed failed"
    [ "$cli_failed" -eq 0 ] && exit 0
    exit 1
}
