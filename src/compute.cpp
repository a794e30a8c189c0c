#include "epmoe/compute.hpp"

#include <cmath>

#include "epmoe/error.hpp"

namespace epmoe {

std::shared_ptr<const MlpKernel> openblas_kernel();  // src/compute_openblas.cpp

std::shared_ptr<const MlpKernel> make_mlp_kernel(const std::string& backend, const std::string& dtype) {
    if (backend == "openblas") {
        if (dtype != "fp32")
            fail("config key compute.dtype = \"", dtype, "\": backend openblas runs fp32 only (Debian's OpenBLAS ",
                 "has no sbgemm); use compute.backend=onednn for bf16");
        return default_mlp_kernel();
    }
    fail("config key compute.backend = \"", backend, "\": this build has openblas");
}

const std::shared_ptr<const MlpKernel>& default_mlp_kernel() {
    static const std::shared_ptr<const MlpKernel> kernel = openblas_kernel();
    return kernel;
}

void silu_mul_rows(float* h, int64_t num_tokens, int d_ff) {
    const size_t cols = 2 * static_cast<size_t>(d_ff);
    for (int64_t t = 0; t < num_tokens; ++t) {
        float* a = h + static_cast<size_t>(t) * cols;
        const float* b = a + d_ff;
        for (int j = 0; j < d_ff; ++j) a[j] = a[j] / (1.0f + std::exp(-a[j])) * b[j];
    }
}

}  // namespace epmoe
