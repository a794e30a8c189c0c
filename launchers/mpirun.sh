#!/usr/bin/env bash
# Launches an MPI program with the flags its MPI needs here: Open MPI (mpirun.openmpi) or MPICH
# (mpiexec.mpich), told apart by the libraries the program links (ldd). Reads hostfiles in either
# syntax, Open MPI's `host slots=N` or MPICH's `host:N`, and hands the chosen MPI its own.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: launchers/mpirun.sh [-n RANKS] [--hostfile FILE] [--mpi openmpi|mpich] [--dry-run] [--] PROGRAM [ARGS...]

Runs PROGRAM on RANKS MPI ranks with the MPI it was built against.
  -n, -np RANKS     number of ranks (default: the hostfile's slots, else nproc)
  --hostfile FILE   hosts to run on; `host slots=N` (Open MPI) or `host:N` (MPICH) lines,
                    # comments and blank lines allowed; converted for the MPI in use
  --mpi NAME        openmpi or mpich (default: detected with ldd on PROGRAM)
  --dry-run         print the command (and the converted hostfile) instead of running it
  -h, --help        this help

Flags added: Open MPI gets --oversubscribe when RANKS exceeds the cores (or the hostfile's slots),
--allow-run-as-root as root, --bind-to core when RANKS fits the cores else --bind-to none, and
-x OPENBLAS_NUM_THREADS; MPICH gets -bind-to core|none and -genv OPENBLAS_NUM_THREADS.
OPENBLAS_NUM_THREADS is 1 unless set in the environment.
EOF
}

die() {
    echo "epmoe-mpirun: error: $*" >&2
    exit 2
}

is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

# Physical cores this process may use (hwloc honours the affinity mask); nproc if hwloc is absent.
count_cores() {
    local n
    n=$(hwloc-calc --number-of core all 2>/dev/null || true)
    if is_count "${n:-}"; then echo "$n"; else nproc; fi
}

# Reads hostfile $1 into hosts[], slots[] (empty when not given) and extras[] (Open MPI's max_slots).
read_hostfile() {
    local file=$1 line lineno=0 words w n extra
    while IFS= read -r line || [ -n "$line" ]; do
        lineno=$((lineno + 1))
        line=${line%%#*}
        read -r -a words <<<"$line" || true
        [ "${#words[@]}" -eq 0 ] && continue
        n="" extra=""
        if [[ ${words[0]} == *:* ]]; then # MPICH: host:N
            n=${words[0]#*:}
            is_count "$n" || die "$file:$lineno: bad process count in '${words[0]}' (expected host:N, N >= 1)"
            [ "${#words[@]}" -eq 1 ] || die "$file:$lineno: unexpected '${words[1]}' after '${words[0]}'"
            words[0]=${words[0]%%:*}
        else # Open MPI: host [slots=N] [max_slots=M]
            for w in "${words[@]:1}"; do
                case $w in
                    slots=*) n=${w#slots=}; is_count "$n" || die "$file:$lineno: bad '$w' (expected slots=N, N >= 1)" ;;
                    max_slots=* | max-slots=*)
                        is_count "${w#*=}" || die "$file:$lineno: bad '$w' (expected max_slots=N, N >= 1)"
                        extra=" $w" ;;
                    *) die "$file:$lineno: unknown field '$w' (expected 'host slots=N' or 'host:N')" ;;
                esac
            done
        fi
        [ -n "${words[0]}" ] || die "$file:$lineno: missing host name"
        hosts+=("${words[0]}")
        slots+=("$n")
        extras+=("$extra")
    done <"$file"
    [ "${#hosts[@]}" -gt 0 ] || die "$file: no hosts in hostfile"
}

# Writes hosts[] in the syntax of MPI $1 to file $2.
write_hostfile() {
    local i
    for i in "${!hosts[@]}"; do
        if [ -z "${slots[i]}" ]; then
            echo "${hosts[i]}"
        elif [ "$1" = openmpi ]; then
            echo "${hosts[i]} slots=${slots[i]}${extras[i]}"
        else
            echo "${hosts[i]}:${slots[i]}"
        fi
    done >"$2"
}

ranks="" hostfile="" mpi="" dry_run=0
while [ $# -gt 0 ]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        -n | -np | --hostfile | --mpi)
            [ $# -ge 2 ] || die "$1 needs a value (see launchers/mpirun.sh --help)"
            case $1 in
                --hostfile) hostfile=$2 ;;
                --mpi) mpi=$2 ;;
                *) ranks=$2 ;;
            esac
            shift 2; continue ;;
        --hostfile=*) hostfile=${1#*=} ;;
        --mpi=*) mpi=${1#*=} ;;
        --dry-run) dry_run=1 ;;
        --) shift; break ;;
        -*) die "unknown option '$1' (see launchers/mpirun.sh --help)" ;;
        *) break ;;
    esac
    shift
done
[ $# -gt 0 ] || die "no PROGRAM given (usage: launchers/mpirun.sh [-n RANKS] [--] PROGRAM [ARGS...])"
[ -z "$ranks" ] || is_count "$ranks" || die "-n $ranks: the number of ranks must be an integer >= 1"
case $mpi in
    "" | openmpi | mpich) ;;
    *) die "--mpi $mpi: expected openmpi or mpich" ;;
esac

# Capacity: the hostfile's slots when there is one (a bare host counts 1), else this machine's cores.
hosts=() slots=() extras=()
if [ -n "$hostfile" ]; then
    if [ ! -f "$hostfile" ] || [ ! -r "$hostfile" ]; then die "--hostfile $hostfile: no such readable file"; fi
    read_hostfile "$hostfile"
    capacity=0
    for n in "${slots[@]}"; do capacity=$((capacity + ${n:-1})); done
    ranks=${ranks:-$capacity}
else
    capacity=$(count_cores)
    ranks=${ranks:-$(nproc)}
fi

# The MPI: as asked, else the one PROGRAM links (MPICH's library is libmpich.so, Open MPI's libmpi.so).
program=$1
shift
if [ -z "$mpi" ]; then
    path=$(command -v -- "$program" || true)
    if [ -z "$path" ] || [ ! -x "$path" ]; then die "$program: not found or not executable"; fi
    libs=$(ldd "$path" 2>/dev/null || true)
    if grep -q 'libmpich' <<<"$libs"; then
        mpi=mpich
    elif grep -q 'libmpi\.so' <<<"$libs"; then
        mpi=openmpi
    else
        die "$program: cannot tell its MPI (ldd shows neither libmpi.so nor libmpich); pass --mpi openmpi|mpich"
    fi
fi

# Oversubscribe past the cores, and past nproc in any case (cores <= nproc).
oversubscribe=0
if [ "$ranks" -gt "$capacity" ] || { [ -z "$hostfile" ] && [ "$ranks" -gt "$(nproc)" ]; }; then
    oversubscribe=1
fi
bind=core
[ "$oversubscribe" -eq 0 ] || bind=none
threads=${OPENBLAS_NUM_THREADS:-1}

tmp_hostfile=""
if [ -n "$hostfile" ]; then
    tmp_hostfile=$(mktemp /tmp/epmoe-hostfile.XXXXXX)
    trap 'rm -f "$tmp_hostfile"' EXIT
    write_hostfile "$mpi" "$tmp_hostfile"
fi

if [ "$mpi" = openmpi ]; then
    cmd=(mpirun.openmpi -n "$ranks")
    [ "$oversubscribe" -eq 0 ] || cmd+=(--oversubscribe)
    [ "$(id -u)" -ne 0 ] || cmd+=(--allow-run-as-root)
    cmd+=(--bind-to "$bind" -x "OPENBLAS_NUM_THREADS=$threads")
    [ -z "$tmp_hostfile" ] || cmd+=(--hostfile "$tmp_hostfile")
else
    cmd=(mpiexec.mpich -n "$ranks" -bind-to "$bind" -genv OPENBLAS_NUM_THREADS "$threads")
    [ -z "$tmp_hostfile" ] || cmd+=(-f "$tmp_hostfile")
fi
cmd+=("$program" "$@")

if [ "$dry_run" -eq 1 ]; then
    printf '%q ' "${cmd[@]}" | sed 's/ $//'
    echo
    if [ -n "$tmp_hostfile" ]; then
        echo "# $tmp_hostfile:"
        sed 's/^/#   /' "$tmp_hostfile"
    fi
    exit 0
fi
command -v "${cmd[0]}" >/dev/null ||
    die "${cmd[0]} not found: install $([ "$mpi" = openmpi ] && echo openmpi-bin || echo mpich)"
# Not exec: the converted hostfile is removed when the job ends.
"${cmd[@]}" && rc=0 || rc=$?
exit "$rc"
