# Sourced by the bench/device/run_*.sh scripts on the device: the carried Debian build (build-dev/bin/epmoe) and its
# libraries (build-dev/libs.tar.xz, dpkg -x'd .debs) on LD_LIBRARY_PATH, one BLAS and OpenMP thread unless a
# run asks otherwise, and the machine's CPU in $OUT/cpu.txt. Sets d (the carried folder).
set -u
d=build-dev
mkdir -p /tmp/dl && tar xJf $d/libs.tar.xz -C /tmp/dl
export LD_LIBRARY_PATH=/tmp/dl/libs OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
lscpu | grep 'Model name' >$OUT/cpu.txt
