#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: installs what is missing, builds build/epmoe (Open MPI) if
# needed, runs `epmoe run` on one rank per CPU through launchers/mpirun.sh, then says where the results
# went and prints the headline figures of their summary.json.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
EPMOE_ROOT=$(cd "$here/.." && pwd)
# shellcheck source=launchers/lib/deps.sh
source "$here/lib/deps.sh"
# shellcheck source=launchers/lib/build.sh
source "$here/lib/build.sh"

usage() {
    cat <<'EOF'
usage: launchers/quickstart.sh [--ranks N] [--no-install] [--] [EPMOE_RUN_OPTIONS...]

Installs missing Debian packages (apt-get, only when something is missing), builds build/epmoe
(Open MPI) if needed, and runs `build/epmoe run EPMOE_RUN_OPTIONS...` on N ranks through
launchers/mpirun.sh. With no options that is the embedded default model and workload.
Then prints the results directory and the headline figures of its summary.json.

options:
  --ranks N      number of MPI ranks (default: nproc)
  --no-install   do not run apt-get, only warn about missing packages
  -h, --help     this help (`launchers/quickstart.sh -- --help` shows epmoe run's options)

Every other argument goes to `epmoe run`, e.g. `launchers/quickstart.sh --steps 20 --policy none`.
EOF
}

die() {
    echo "epmoe-quickstart: error: $*" >&2
    exit 2
}

ranks=$(nproc)
install=1
run_args=()
while [ $# -gt 0 ]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --no-install) install=0 ;;
        --ranks | --ranks=*)
            if [ "$1" = --ranks ]; then
                [ $# -ge 2 ] || die "--ranks needs a number"
                ranks=$2; shift
            else
                ranks=${1#--ranks=}
            fi
            [[ $ranks =~ ^[1-9][0-9]*$ ]] || die "--ranks $ranks: must be an integer >= 1"
            ;;
        --) shift; run_args+=("$@"); break ;;
        *) run_args+=("$1") ;;
    esac
    shift
done

if [ "$install" -eq 1 ]; then
    epmoe_install_deps epmoe-quickstart
else
    epmoe_warn_missing_deps epmoe-quickstart
fi

# Configure once with test.sh's settings for build/ (so neither rebuilds the other's work), then
# build only the epmoe target; an up-to-date build costs a second.
if [ ! -f "$EPMOE_ROOT/build/CMakeCache.txt" ]; then
    epmoe_configure build "${EPMOE_CMAKE_OPENMPI[@]}" -DEPMOE_WERROR=ON -DEPMOE_SANITIZE=OFF
fi
cmake --build "$EPMOE_ROOT/build" -j "$(nproc)" --target epmoe

# Run from the repo root, so the default results/<timestamp>-<policy>/ lands in the repo's results/.
cd "$EPMOE_ROOT"
log=$(mktemp /tmp/epmoe-quickstart.XXXXXX)
trap 'rm -f "$log"' EXIT
echo "epmoe-quickstart: running build/epmoe run ${run_args[*]} on $ranks ranks"
"$here/mpirun.sh" -n "$ranks" -- build/epmoe run "${run_args[@]}" 2>&1 | tee "$log" && rc=0 || rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
    echo "epmoe-quickstart: epmoe run failed (exit $rc)" >&2
    exit "$rc"
fi

# `epmoe run` prints "results: <dir>" once it has written the directory.
dir=$(sed -n 's/^results: *//p' "$log" | tail -n 1)
if [ -z "$dir" ]; then
    echo "epmoe-quickstart: epmoe run printed no 'results:' line" >&2
    exit 1
fi
summary=$dir/summary.json
echo
echo "results directory: $dir  (config.json, metrics.jsonl, summary.json; see results/README.md)"
if [ ! -f "$summary" ]; then
    echo "epmoe-quickstart: $summary is missing" >&2
    exit 1
fi
if ! command -v python3 >/dev/null; then
    echo "summary: $summary (install python3 for the headline figures)"
    exit 0
fi
python3 - "$summary" <<'EOF'
import json, sys

summary = json.load(open(sys.argv[1]))

def get(*path):
    value = summary
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value

def show(label, value, unit="", spec=".4g"):
    if value is None:
        text = "not measured"
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        text = format(value, spec) + unit
    else:
        text = str(value)
    print(f"  {label:<28} {text}")

print("headline figures:")
show("tokens/s", get("tokens_per_s"), "", ".1f")
show("step time p50", get("step_time_s", "p50"), " s")
show("step time p99", get("step_time_s", "p99"), " s")
show("rank load max/mean (last)", get("load", "rank_max_over_mean_last"))
show("energy source", get("energy", "source"))
show("joules per token", get("energy", "joules_per_token"), " J")
EOF
