#include "epmoe/expert.hpp"

#include <cblas.h>

#include <cmath>

#include "epmoe/error.hpp"

namespace epmoe {

void expert_forward(const ExpertWeights& w, int d_model, int d_ff, std::span<const float> x, std::span<float> y,
                    std::vector<float>& scratch) {
    const int n = static_cast<int>(x.size() / d_model);
    EPMOE_ASSERT(y.size() == x.size() && w.w13.size() == 2ull * d_ff * d_model && w.w2.size() == 1ull * d_model * d_ff);
    if (n == 0) return;
    const int h_cols = 2 * d_ff;
    scratch.resize(static_cast<size_t>(n) * h_cols);
    float* h = scratch.data();  // [n, 2 d_ff]: W1·x in the left half, W3·x in the right half
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, h_cols, d_model, 1.0f, x.data(), d_model, w.w13.data(),
                d_model, 0.0f, h, h_cols);
    // silu(a) * b written over the left half, which becomes the [n, d_ff] input of W2 (leading dim 2 d_ff).
    for (int t = 0; t < n; ++t) {
        float* a = h + static_cast<size_t>(t) * h_cols;
        const float* b = a + d_ff;
        for (int j = 0; j < d_ff; ++j) a[j] = a[j] / (1.0f + std::exp(-a[j])) * b[j];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, d_model, d_ff, 1.0f, h, h_cols, w.w2.data(), d_ff, 0.0f,
                y.data(), d_model);
}

void dense_forward(const DenseMlp& mlp, int d_model, std::span<const float> x, std::span<float> y,
                   std::vector<float>& scratch) {
    expert_forward(mlp.w, d_model, mlp.d_ff, x, y, scratch);
}

void add_shared_expert(const DenseMlp& mlp, std::span<const float> gate, int d_model, std::span<const float> x,
                       std::span<float> out, std::vector<float>& y, std::vector<float>& scratch) {
    EPMOE_ASSERT(gate.size() == static_cast<size_t>(d_model) && out.size() == x.size());
    y.resize(x.size());
    dense_forward(mlp, d_model, x, y, scratch);
    for (size_t row = 0; row < x.size(); row += d_model) {
        double logit = 0;
        for (int j = 0; j < d_model; ++j) logit += static_cast<double>(gate[j]) * x[row + j];
        const float s = static_cast<float>(1.0 / (1.0 + std::exp(-logit)));
        for (int j = 0; j < d_model; ++j) out[row + j] += s * y[row + j];
    }
}

}  // namespace epmoe
