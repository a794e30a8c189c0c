// Debian 12's OpenBLAS 0.3.21 (DYNAMIC_ARCH) takes CPUs newer than its tables for Prescott and runs its SSE3
// kernels: on the 16-core Xeon (AMX) of the device `epmoe info` said "core Prescott" and a 2048 x 1024 x 32 sgemm
// took 33 ms. OpenBLAS picks its core when it loads, from OPENBLAS_CORETYPE, so the cure is to set that variable
// and run the program again, before MPI starts.
#pragma once

#include <string>

namespace epmoe {

// When OpenBLAS chose a pre-AVX core (Prescott, Core2, Nehalem, ...) on a CPU with AVX2 and FMA, and neither
// OPENBLAS_CORETYPE nor EPMOE_KEEP_OPENBLAS_CORE is set: sets OPENBLAS_CORETYPE (SkylakeX with AVX-512 F, BW, DQ
// and VL, else Haswell), keeps the detected name in EPMOE_OPENBLAS_DETECTED and executes this program again with
// the same arguments. Returns when there is nothing to do, in the SMPI build, or when the exec fails.
void correct_openblas_core(char** argv);

// For `epmoe info`: the core OpenBLAS detected before correct_openblas_core set another ("" when it did not), and
// a warning when OpenBLAS runs a pre-AVX core on a CPU with AVX2 ("" when it does not).
std::string openblas_core_detected();
std::string openblas_core_warning();

}  // namespace epmoe
