#include "sgemm.hpp"

#include <oneapi/dnnl/dnnl.h>

#include <atomic>
#include <chrono>

#include "epmoe/base/error.hpp"
#include "epmoe/ops/gemm_time.hpp"

namespace epmoe {
namespace {

std::atomic<int64_t> g_sgemm_ns{0};  // time inside sgemm, every thread's calls added up

}  // namespace

double sgemm_seconds() { return static_cast<double>(g_sgemm_ns.load(std::memory_order_relaxed)) * 1e-9; }

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
    const auto start = std::chrono::steady_clock::now();
    const dnnl_status_t status =
        dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    g_sgemm_ns.fetch_add(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count(),
        std::memory_order_relaxed);
    if (status != dnnl_success)
        fail("oneDNN's dnnl_sgemm failed (status ", static_cast<int>(status), ") on a ", m, " x ", n, " x ", k,
             " product");
}

}  // namespace epmoe
