#include "sgemm.hpp"

#include <oneapi/dnnl/dnnl.h>

#include "epmoe/base/error.hpp"

namespace epmoe {

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
    const dnnl_status_t status =
        dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    if (status != dnnl_success)
        fail("oneDNN's dnnl_sgemm failed (status ", static_cast<int>(status), ") on a ", m, " x ", n, " x ", k,
             " product");
}

}  // namespace epmoe
