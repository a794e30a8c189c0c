#include "sgemm.hpp"

#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <strings.h>

#include <atomic>
#include <chrono>

#include "epmoe/base/error.hpp"
#include "epmoe/ops/gemm_time.hpp"

namespace epmoe {
namespace {

std::atomic<int64_t> g_sgemm_ns{0};  // time inside sgemm, every thread's calls added up

// The OpenBLAS core when it is one of AVX-512 (sgemm.hpp says why); null otherwise.
const char* avx512_openblas_core() {
    static const char* core = [] {
        const char* name = openblas_get_corename();
        for (const char* avx512 : {"skylakex", "cooperlake", "sapphirerapids"})
            if (name != nullptr && strcasecmp(name, avx512) == 0) return name;
        return static_cast<const char*>(nullptr);
    }();
    return core;
}

bool weight_grad_to_openblas(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k) {
    return trans_a && !trans_b && m * n * k > (int64_t{1} << 26) && avx512_openblas_core() != nullptr;
}

}  // namespace

std::string sgemm_weight_grad_library() {
    const char* core = avx512_openblas_core();
    return core != nullptr ? std::string("openblas (core ") + core + ")" : "onednn";
}

double sgemm_seconds() { return static_cast<double>(g_sgemm_ns.load(std::memory_order_relaxed)) * 1e-9; }

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
    const auto start = std::chrono::steady_clock::now();
    dnnl_status_t status = dnnl_success;
    if (weight_grad_to_openblas(trans_a, trans_b, m, n, k))
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<blasint>(m), static_cast<blasint>(n),
                    static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
                    static_cast<blasint>(ldc));
    else
        status = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    g_sgemm_ns.fetch_add(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count(),
        std::memory_order_relaxed);
    if (status != dnnl_success)
        fail("oneDNN's dnnl_sgemm failed (status ", static_cast<int>(status), ") on a ", m, " x ", n, " x ", k,
             " product");
}

}  // namespace epmoe
