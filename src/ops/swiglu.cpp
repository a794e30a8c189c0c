// SwiGLU MLPs (swiglu.hpp): the forward through a model's kernel, and the FP32 training forward and backward.
#include "epmoe/ops/swiglu.hpp"

#include <climits>
#include <cmath>

#include "epmoe/base/error.hpp"
#include "sgemm.hpp"

namespace epmoe {

void expert_forward(const MlpKernel& kernel, const ExpertWeights& w, int d_model, int d_ff, std::span<const float> x,
                    std::span<float> y, std::vector<float>& scratch) {
    kernel.forward(w, d_model, d_ff, x, y, scratch);
}

void dense_forward(const MlpKernel& kernel, const DenseMlp& mlp, int d_model, std::span<const float> x,
                   std::span<float> y, std::vector<float>& scratch) {
    expert_forward(kernel, mlp.w, d_model, mlp.d_ff, x, y, scratch);
}

void add_shared_expert(const MlpKernel& kernel, const DenseMlp& mlp, std::span<const float> gate, int d_model,
                       std::span<const float> x, std::span<float> out, std::vector<float>& y,
                       std::vector<float>& scratch) {
    EPMOE_ASSERT(gate.size() == static_cast<size_t>(d_model) && out.size() == x.size());
    y.resize(x.size());
    dense_forward(kernel, mlp, d_model, x, y, scratch);
    for (size_t row = 0; row < x.size(); row += d_model) {
        double logit = 0;
        for (int j = 0; j < d_model; ++j) logit += static_cast<double>(gate[j]) * x[row + j];
        const float s = static_cast<float>(1.0 / (1.0 + std::exp(-logit)));
        for (int j = 0; j < d_model; ++j) out[row + j] += s * y[row + j];
    }
}

void expert_forward_train(const ExpertWeights& w, int d_model, int d_ff, std::span<const float> x, std::span<float> y,
                          std::vector<float>& h13, std::vector<float>& scratch) {
    const size_t rows = x.size() / static_cast<size_t>(d_model), h_cols = 2 * static_cast<size_t>(d_ff);
    EPMOE_ASSERT(d_model > 0 && d_ff > 0 && y.size() == x.size() && rows <= INT_MAX &&
                 w.w13.size() == h_cols * d_model && w.w2.size() == static_cast<size_t>(d_model) * d_ff);
    const int n = static_cast<int>(rows);
    h13.resize(rows * h_cols);
    if (n == 0) return;
    // h13 [n, 2 d_ff] = x W13^T; then the onednn/fp32 kernel's steps with the SiLU-multiply into scratch: W2 (the
    // same bits as that kernel: both run oneDNN's gemm:jit, tests/mpi/test_moe_train_mpi.cpp).
    sgemm(false, true, n, 2 * d_ff, d_model, 1.0f, x.data(), d_model, w.w13.data(), d_model, 0.0f, h13.data(),
          2 * d_ff);
    scratch.resize(rows * static_cast<size_t>(d_ff));
    silu_mul_rows_to(h13.data(), scratch.data(), n, d_ff, d_ff);
    sgemm(false, true, n, d_model, d_ff, 1.0f, scratch.data(), d_ff, w.w2.data(), d_ff, 0.0f, y.data(), d_model);
}

void expert_backward(const ExpertWeights& w, int d_model, int d_ff, std::span<const float> x,
                     std::span<const float> h13, std::span<const float> dy, std::span<float> dx, ExpertWeights& grad,
                     std::vector<float>& scratch) {
    const size_t rows = x.size() / static_cast<size_t>(d_model), f = static_cast<size_t>(d_ff);
    EPMOE_ASSERT(d_model > 0 && d_ff > 0 && rows <= INT_MAX && h13.size() == rows * 2 * f && dy.size() == x.size() &&
                 (dx.empty() || dx.size() == x.size()) && w.w13.size() == 2 * f * d_model &&
                 w.w2.size() == f * d_model && grad.w13.size() == w.w13.size() && grad.w2.size() == w.w2.size());
    const int n = static_cast<int>(rows);
    if (n == 0) return;
    scratch.resize(rows * 3 * f);
    float* act = scratch.data();              // [n, d_ff]: silu(a) * b, a = W1·x, b = W3·x
    float* dh13 = scratch.data() + rows * f;  // [n, 2 d_ff]: da | db; dact first, in the left half
    // dact [n, d_ff] = dy [n, d_model] W2 [d_model, d_ff]
    sgemm(false, false, n, d_ff, d_model, 1.0f, dy.data(), d_model, w.w2.data(), d_ff, 0.0f, dh13, 2 * d_ff);
    silu_mul_backward_rows(h13.data(), dh13, act, n, d_ff);
    // grad.w2 [d_model, d_ff] += dy^T act; grad.w13 [2 d_ff, d_model] += dh13^T x; dx [n, d_model] += dh13 W13
    sgemm(true, false, d_model, d_ff, n, 1.0f, dy.data(), d_model, act, d_ff, 1.0f, grad.w2.data(), d_ff);
    sgemm(true, false, 2 * d_ff, d_model, n, 1.0f, dh13, 2 * d_ff, x.data(), d_model, 1.0f, grad.w13.data(), d_model);
    if (!dx.empty())
        sgemm(false, false, n, d_model, 2 * d_ff, 1.0f, dh13, 2 * d_ff, w.w13.data(), d_model, 1.0f, dx.data(),
              d_model);
}

void add_shared_expert_train(const DenseMlp& mlp, std::span<const float> gate, int d_model, std::span<const float> x,
                             std::span<float> out, SharedExpertSaved& saved, std::vector<float>& scratch) {
    EPMOE_ASSERT(gate.size() == static_cast<size_t>(d_model) && out.size() == x.size());
    saved.y.resize(x.size());
    saved.score.resize(x.size() / static_cast<size_t>(d_model));
    expert_forward_train(mlp.w, d_model, mlp.d_ff, x, saved.y, saved.h13, scratch);
    for (size_t t = 0; t < saved.score.size(); ++t) {
        const size_t row = t * static_cast<size_t>(d_model);
        double logit = 0;
        for (int j = 0; j < d_model; ++j) logit += static_cast<double>(gate[j]) * x[row + j];
        const float s = saved.score[t] = static_cast<float>(1.0 / (1.0 + std::exp(-logit)));
        for (int j = 0; j < d_model; ++j) out[row + j] += s * saved.y[row + j];
    }
}

void shared_expert_backward(const DenseMlp& mlp, std::span<const float> gate, int d_model, std::span<const float> x,
                            const SharedExpertSaved& saved, std::span<const float> dout, std::span<float> dx,
                            ExpertWeights& grad, std::span<float> dgate, std::vector<float>& scratch) {
    const size_t d = static_cast<size_t>(d_model), n = x.size() / d;
    EPMOE_ASSERT(gate.size() == d && dgate.size() == d && dout.size() == x.size() && dx.size() == x.size() &&
                 saved.y.size() == x.size() && saved.score.size() == n);
    std::vector<float> dy(x.size());   // [num_tokens, d_model]: the MLP's output gradient, s dout
    std::vector<double> dgate_sum(d);  // [d_model]
    for (size_t t = 0; t < n; ++t) {
        const size_t row = t * d;
        const double s = saved.score[t];
        double ds = 0;  // d loss / d s = dout · mlp(x)
        for (size_t j = 0; j < d; ++j) ds += static_cast<double>(dout[row + j]) * saved.y[row + j];
        const double dlogit = ds * s * (1.0 - s);
        for (size_t j = 0; j < d; ++j) {
            dy[row + j] = static_cast<float>(s) * dout[row + j];
            dx[row + j] += static_cast<float>(dlogit * gate[j]);
            dgate_sum[j] += dlogit * x[row + j];
        }
    }
    for (size_t j = 0; j < d; ++j) dgate[j] += static_cast<float>(dgate_sum[j]);
    expert_backward(mlp.w, d_model, mlp.d_ff, x, saved.h13, dy, dx, grad, scratch);
}

}  // namespace epmoe
