# shellcheck shell=bash
# The Debian 12 packages epmoe needs to build, test and run, and the one function that installs the
# missing ones. Sourced by launchers/test.sh and launchers/quickstart.sh; keep the list here only.

EPMOE_DEPS=(
    build-essential cmake pkg-config git ca-certificates
    libopenmpi-dev openmpi-bin          # the default MPI (build/, build-asan/)
    libmpich-dev mpich                  # the second MPI (build-mpich/)
    libopenblas-dev libhwloc-dev hwloc
    libdnnl-dev                         # oneDNN: the second GEMM backend (compute.backend=onednn, bf16)
    libsimgrid-dev                      # SimGrid SMPI (smpicxx, smpirun): epmoe simulate, build-smpi/
    libboost-program-options-dev nlohmann-json3-dev
    libpcre2-dev libutf8proc-dev libsentencepiece-dev  # the tokenizers (src/text/): regexes, NFC, tokenizer.model
    libgtest-dev libgmock-dev googletest libbenchmark-dev
    python3                             # quickstart's summary, test fixtures
    python3-matplotlib                  # the figures of epmoe report (src/app/report.py) and bench/scale.png
    fortunes                            # the text epmoe train learns from with no files (/usr/share/games/fortunes)
)

# The private one-node SLURM cluster of test.sh's SLURM step (tests/slurm/); only test.sh adds these.
# shellcheck disable=SC2034 # used by launchers/test.sh
EPMOE_SLURM_DEPS=(slurmctld slurmd slurm-client munge)

# Prints the packages of EPMOE_DEPS that are not installed, one a line.
epmoe_missing_deps() {
    local pkg
    for pkg in "${EPMOE_DEPS[@]}"; do
        if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
            echo "$pkg"
        fi
    done
}

# Installs what is missing with apt-get. Does nothing (no network, no apt) when all is there.
# $1 is the name to prefix messages with, e.g. epmoe-test.
epmoe_install_deps() {
    local who=$1 missing sudo=()
    mapfile -t missing < <(epmoe_missing_deps)
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || {
            echo "$who: error: missing packages and not root (no sudo): ${missing[*]}" >&2
            return 2
        }
        sudo=(sudo)
    fi
    echo "$who: installing ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# For --no-install: says what is missing, without installing it.
epmoe_warn_missing_deps() {
    local who=$1 missing
    mapfile -t missing < <(epmoe_missing_deps)
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "$who: warning: not installed (--no-install): ${missing[*]}" >&2
    fi
    return 0
}
