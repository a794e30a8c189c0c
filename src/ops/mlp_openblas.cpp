// The OpenBLAS FP32 kernel: one fused W1|W3 GEMM, SiLU-multiply in one pass, one W2 GEMM.
#include <cblas.h>

#include "epmoe/base/error.hpp"
#include "epmoe/ops/mlp_kernel.hpp"
#include "fp32_view.hpp"

namespace epmoe {
namespace {

class OpenBlasKernel final : public MlpKernel {
public:
    std::string name() const override { return "openblas/fp32"; }
    std::string implementation() const override {
        const char* core = openblas_get_corename();
        return cat("cblas_sgemm, OpenBLAS core ", core ? core : "unknown");
    }

    void prepare(ExpertWeights&, int, int) const override {}  // reads the FP32 weights as loaded

    void forward(const ExpertWeights& w, int d_model, int d_ff, std::span<const float> x, std::span<float> y,
                 std::vector<float>& scratch) const override {
        const int n = static_cast<int>(x.size() / d_model);
        EPMOE_ASSERT(y.size() == x.size());
        const auto [w13, w2] = fp32_weights(w, d_model, d_ff);
        if (n == 0) return;
        const int h_cols = 2 * d_ff;
        scratch.resize(static_cast<size_t>(n) * h_cols);
        float* h = scratch.data();  // [n, 2 d_ff]: W1·x in the left half, W3·x in the right half
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, h_cols, d_model, 1.0f, x.data(), d_model, w13, d_model,
                    0.0f, h, h_cols);
        silu_mul_rows(h, n, d_ff);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, d_model, d_ff, 1.0f, h, h_cols, w2, d_ff, 0.0f,
                    y.data(), d_model);
    }

    MlpArrays arrays(const ExpertWeights& w, int d_model, int d_ff) const override {
        return fp32_arrays(w, d_model, d_ff);
    }
    ExpertWeights view(const std::byte* w13, const std::byte* w2, int d_model, int d_ff,
                       std::shared_ptr<const void> owner) const override {
        return fp32_view(w13, w2, d_model, d_ff, std::move(owner));
    }
};

}  // namespace

std::shared_ptr<const MlpKernel> openblas_kernel() { return std::make_shared<OpenBlasKernel>(); }

}  // namespace epmoe
