#include "epmoe/ops/mlp_kernel.hpp"

#include <cblas.h>
#include <omp.h>

#include <atomic>
#include <exception>

#include "epmoe/base/error.hpp"

namespace epmoe {
namespace {

// compute.backend = auto in FP32: oneDNN. Measured on the expert shapes at 1 thread (bench/RESULTS.md, Intel
// Xeon with AVX-512: 98.5 against 86.8 GFLOP/s at 64 rows, 144 against 137 at 1024). A fixed choice, not a
// timing at start-up: reruns stay bit-identical.
const char* const kAutoFp32Backend = "onednn";

}  // namespace

std::shared_ptr<const MlpKernel> openblas_kernel();  // src/ops/mlp_openblas.cpp
std::shared_ptr<const MlpKernel> onednn_kernel(const std::string& dtype, bool in_place, bool pack,
                                               int panel_kib);          // src/ops/mlp_onednn.cpp
std::shared_ptr<const MlpKernel> amx_kernel(const std::string& dtype);  // src/ops/mlp_amx.cpp

MlpArrays MlpKernel::arrays(const ExpertWeights&, int, int) const {
    fail("compute kernel ", name(), " cannot share its weights with other ranks (resources.work_sharing = host)");
}

ExpertWeights MlpKernel::view(const std::byte*, const std::byte*, int, int, std::shared_ptr<const void>) const {
    fail("compute kernel ", name(), " cannot share its weights with other ranks (resources.work_sharing = host)");
}

std::string resolve_backend(const std::string& backend, const std::string& dtype) {
    if (backend != "auto") return backend;
    // bf16: amx where the CPU has AMX-BF16 and Linux granted the tile state (a property of the machine, not a
    // timing: 2-4x oneDNN 2.6's BF16 matmul on the expert shapes, bench/RESULTS.md), else oneDNN (Debian's
    // OpenBLAS 0.3.21 has no sbgemm). fp32: the faster of the two on the expert GEMM shapes, measured.
    if (dtype == "bf16") return bf16_support().amx_permitted ? "amx" : "onednn";
    return kAutoFp32Backend;
}

std::shared_ptr<const MlpKernel> make_mlp_kernel(const std::string& backend, const std::string& dtype, bool in_place,
                                                 bool pack, int panel_kib) {
    if (dtype != "fp32" && dtype != "bf16") fail("config key compute.dtype = \"", dtype, "\": must be fp32 or bf16");
    const std::string resolved = resolve_backend(backend, dtype);
    if (panel_kib > 0 && resolved != "onednn")
        fail("config key compute.weight_panel_kib = ", panel_kib, ": compute.backend ", backend, " runs ", resolved,
             " here (panels are a way of running the packed onednn/fp32 kernel)");
    if (resolved == "openblas") {
        if (dtype != "fp32")
            fail("config key compute.dtype = \"", dtype, "\": compute.backend openblas runs fp32 only (Debian's ",
                 "OpenBLAS has no sbgemm); use compute.backend=onednn or auto for bf16");
        static const std::shared_ptr<const MlpKernel> kernel = openblas_kernel();
        return kernel;
    }
    if (resolved == "onednn") return onednn_kernel(dtype, in_place, pack, panel_kib);
    if (resolved == "amx") return amx_kernel(dtype);
    fail("config key compute.backend = \"", backend, "\": must be auto, openblas, onednn or amx");
}

const std::shared_ptr<const MlpKernel>& default_mlp_kernel() {
    static const std::shared_ptr<const MlpKernel> kernel = make_mlp_kernel("auto", "fp32", /*in_place=*/true);
    return kernel;
}

void run_tasks(int threads, size_t count, const std::function<void(size_t, int)>& task) {
    if (threads <= 1 || count == 0) {
        for (size_t i = 0; i < count; ++i) task(i, 0);
        return;
    }
    const int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    // A lone task goes through the parallel region too: inside it oneDNN runs (and makes its primitives for) one
    // thread, as for every task.
    std::exception_ptr failure;
    std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (size_t i = 0; i < count; ++i) {
        if (failed.load()) continue;
        try {
            task(i, omp_get_thread_num());
        } catch (...) {
#pragma omp critical(epmoe_run_tasks)
            if (!failed.exchange(true)) failure = std::current_exception();
        }
    }
    openblas_set_num_threads(blas_threads);
    if (failure) std::rethrow_exception(failure);
}

void set_compute_threads(int threads) {
    openblas_set_num_threads(threads);
    omp_set_num_threads(threads);  // oneDNN (Debian's libdnnl runs on OpenMP) reads omp_get_max_threads()
}

}  // namespace epmoe
