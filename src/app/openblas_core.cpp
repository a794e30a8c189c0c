#include "app/openblas_core.hpp"

#include <cblas.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "epmoe/base/error.hpp"
#include "epmoe/sim/sim.hpp"

namespace epmoe {
namespace {

// OpenBLAS's names of cores without AVX (driver/others/dynamic.c's corename table).
bool pre_avx(const char* core) {
    static const char* const kNames[] = {"katmai",  "coppermine", "northwood", "prescott",   "banias",
                                         "atom",    "core2",      "penryn",    "dunnington", "nehalem",
                                         "opteron", "barcelona",  "nano",      "unknown"};
    if (!core) return false;
    for (const char* name : kNames)
        if (strcasecmp(core, name) == 0) return true;
    return false;
}

// The OpenBLAS core this CPU can run: SkylakeX, Haswell, or null (no AVX2 and FMA: leave OpenBLAS's choice).
const char* capable_core() {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return nullptr;
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    return avx512 ? "SkylakeX" : "Haswell";
}

// The core OpenBLAS should run instead of the one it chose (a pre-AVX one on a CPU with AVX2), or null.
const char* better_core() { return pre_avx(openblas_get_corename()) ? capable_core() : nullptr; }

}  // namespace

void correct_openblas_core(char** argv) {
    if (sim::simulated() || std::getenv("OPENBLAS_CORETYPE") || std::getenv("EPMOE_KEEP_OPENBLAS_CORE")) return;
    const char* core = openblas_get_corename();
    const char* want = better_core();
    if (!want) return;
    setenv("EPMOE_OPENBLAS_DETECTED", core, 1);
    setenv("OPENBLAS_CORETYPE", want, 1);
    execv("/proc/self/exe", argv);  // returns only on failure: run on with the core OpenBLAS chose
    unsetenv("OPENBLAS_CORETYPE");
}

std::string openblas_core_detected() {
    const char* detected = std::getenv("EPMOE_OPENBLAS_DETECTED");
    return detected ? detected : "";
}

std::string openblas_core_warning() {
    const char* core = openblas_get_corename();
    const char* want = better_core();
    if (!want) return "";
    return cat("OpenBLAS runs its ", core, " kernels on a CPU with AVX2",
               std::strcmp(want, "SkylakeX") ? "" : " and AVX-512", ": set OPENBLAS_CORETYPE=", want,
               " (epmoe does so itself unless OPENBLAS_CORETYPE or "
               "EPMOE_KEEP_OPENBLAS_CORE is set)");
}

}  // namespace epmoe
