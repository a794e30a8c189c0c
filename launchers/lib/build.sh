# shellcheck shell=bash
# shellcheck disable=SC2034 # the arrays are used by the scripts that source this file
# The build configurations the launchers share, so test.sh and quickstart.sh configure build/ the same
# way and never make each other rebuild from scratch. Sourced; needs EPMOE_ROOT (the repo root).

# Open MPI, named explicitly (the unsuffixed mpicxx/mpiexec are Debian alternatives that may point
# elsewhere). build/ and build-asan/ use it.
EPMOE_CMAKE_OPENMPI=(
    -DMPI_C_COMPILER=/usr/bin/mpicc.openmpi -DMPI_CXX_COMPILER=/usr/bin/mpicxx.openmpi
    -DMPIEXEC_EXECUTABLE=/usr/bin/mpiexec.openmpi
)
# MPICH, for build-mpich/.
EPMOE_CMAKE_MPICH=(
    -DMPI_C_COMPILER=/usr/bin/mpicc.mpich -DMPI_CXX_COMPILER=/usr/bin/mpicxx.mpich
    -DMPIEXEC_EXECUTABLE=/usr/bin/mpiexec.mpich
)

# Value of a FILEPATH/STRING entry of a CMakeCache.txt, or nothing.
epmoe_cache_value() {
    sed -n "s/^$2:[A-Z]*=//p" "$1" 2>/dev/null | head -n 1
}

# Configures DIR (relative to EPMOE_ROOT) with the given -D arguments. FindMPI caches what it found,
# so when DIR was last configured against another MPI (the compiler or mpiexec resolve to different
# files) the cache is started afresh; otherwise it is reused and the build stays incremental.
epmoe_configure() {
    local dir=$EPMOE_ROOT/$1 arg var want have fresh=()
    shift
    if [ -f "$dir/CMakeCache.txt" ]; then
        for arg in "$@"; do
            case $arg in
                -DMPI_CXX_COMPILER=* | -DMPIEXEC_EXECUTABLE=*)
                    var=${arg#-D}; want=${var#*=}; var=${var%%=*}
                    have=$(epmoe_cache_value "$dir/CMakeCache.txt" "$var")
                    if [ "$(readlink -f "$have" 2>/dev/null)" != "$(readlink -f "$want")" ]; then
                        fresh=(--fresh)
                    fi
                    ;;
            esac
        done
    fi
    cmake "${fresh[@]}" -S "$EPMOE_ROOT" -B "$dir" "$@"
}
