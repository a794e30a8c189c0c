#include "epmoe/ops/mlp_kernel.hpp"

#include <cblas.h>
#include <omp.h>

#include "epmoe/base/error.hpp"

namespace epmoe {
namespace {

// compute.backend = auto in FP32: oneDNN. Measured on the expert shapes at 1 thread (bench/RESULTS.md, Intel
// Xeon with AVX-512: 98.5 against 86.8 GFLOP/s at 64 rows, 144 against 137 at 1024). A fixed choice, not a
// timing at start-up: reruns stay bit-identical.
const char* const kAutoFp32Backend = "onednn";

}  // namespace

std::shared_ptr<const MlpKernel> openblas_kernel();                        // src/ops/mlp_openblas.cpp
std::shared_ptr<const MlpKernel> onednn_kernel(const std::string& dtype);  // src/ops/mlp_onednn.cpp
std::shared_ptr<const MlpKernel> amx_kernel(const std::string& dtype);     // src/ops/mlp_amx.cpp

std::string resolve_backend(const std::string& backend, const std::string& dtype) {
    if (backend != "auto") return backend;
    // bf16: amx where the CPU has AMX-BF16 and Linux granted the tile state (a property of the machine, not a
    // timing: 2-4x oneDNN 2.6's BF16 matmul on the expert shapes, bench/RESULTS.md), else oneDNN (Debian's
    // OpenBLAS 0.3.21 has no sbgemm). fp32: the faster of the two on the expert GEMM shapes, measured.
    if (dtype == "bf16") return bf16_support().amx_permitted ? "amx" : "onednn";
    return kAutoFp32Backend;
}

std::shared_ptr<const MlpKernel> make_mlp_kernel(const std::string& backend, const std::string& dtype) {
    if (dtype != "fp32" && dtype != "bf16") fail("config key compute.dtype = \"", dtype, "\": must be fp32 or bf16");
    const std::string resolved = resolve_backend(backend, dtype);
    if (resolved == "openblas") {
        if (dtype != "fp32")
            fail("config key compute.dtype = \"", dtype, "\": compute.backend openblas runs fp32 only (Debian's ",
                 "OpenBLAS has no sbgemm); use compute.backend=onednn or auto for bf16");
        static const std::shared_ptr<const MlpKernel> kernel = openblas_kernel();
        return kernel;
    }
    if (resolved == "onednn") return onednn_kernel(dtype);
    if (resolved == "amx") return amx_kernel(dtype);
    fail("config key compute.backend = \"", backend, "\": must be auto, openblas, onednn or amx");
}

const std::shared_ptr<const MlpKernel>& default_mlp_kernel() {
    static const std::shared_ptr<const MlpKernel> kernel = make_mlp_kernel("auto", "fp32");
    return kernel;
}

void set_compute_threads(int threads) {
    openblas_set_num_threads(threads);
    omp_set_num_threads(threads);  // oneDNN (Debian's libdnnl runs on OpenMP) reads omp_get_max_threads()
}

}  // namespace epmoe
