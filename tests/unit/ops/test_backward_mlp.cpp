// The backward of SwiGLU MLPs (routed experts and dense layers alike) and of Qwen2-MoE's shared expert with its
// sigmoid gate (ops/swiglu.hpp) against central finite differences of double-precision forwards.
#include <gtest/gtest.h>

#include <vector>

#include "backward_check.hpp"
#include "epmoe/ops/swiglu.hpp"

namespace epmoe {
namespace {

using bwdtest::check_grad;
using bwdtest::random_vec;
using bwdtest::to_double;

ExpertWeights mlp_weights(int d_model, int d_ff, uint64_t seed) {
    ExpertWeights w;
    w.w13 = random_vec(2 * d_ff * d_model, seed, 0.6f);
    w.w2 = random_vec(d_model * d_ff, seed + 1, 0.6f);
    return w;
}

ExpertWeights mlp_zero_like(const ExpertWeights& w) {
    ExpertWeights g;
    g.w13.assign(w.w13.size(), 0.0f);
    g.w2.assign(w.w2.size(), 0.0f);
    return g;
}

TEST(MlpBackward, ExpertMatchesFiniteDifferences) {
    const int n = 5, d = 6, f = 7;
    ExpertWeights w = mlp_weights(d, f, 21);
    std::vector<float> x = random_vec(n * d, 23, 1.5f), r = random_vec(n * d, 24), y(n * d), h13, scratch;
    expert_forward_train(w, d, f, x, y, h13, scratch);
    const bwdtest::Vec ref = bwdtest::ref_swiglu(to_double(x), d, f, w.w13, w.w2);
    EXPECT_LT(bwdtest::rel_l2(y, ref), 1e-6);
    ASSERT_EQ(h13.size(), static_cast<size_t>(n * 2 * f));
    std::vector<float> dx(n * d, 0.0f);
    ExpertWeights grad = mlp_zero_like(w);
    expert_backward(w, d, f, x, h13, r, dx, grad, scratch);
    auto loss = [&] { return bwdtest::dot(bwdtest::ref_swiglu(to_double(x), d, f, w.w13, w.w2), r); };
    check_grad("expert dx", x, dx, loss);
    check_grad("expert dw13", w.w13, grad.w13, loss);
    check_grad("expert dw2", w.w2, grad.w2, loss);
    // No rows: nothing to do, nothing touched.
    expert_backward(w, d, f, {}, {}, {}, {}, grad, scratch);
}

// Weight gradients of more than 2^26 multiply-adds, which run on OpenBLAS where it has an AVX-512 core
// (ops/sgemm.hpp), against double loops over the forward's own h13: dact = dy W2, da = dact b silu'(a),
// db = dact silu(a), dW2 = dy^T (silu(a) b), dW13 = [da | db]^T x.
TEST(MlpBackward, LargeWeightGradientsMatchDoubleLoops) {
    const int n = 1024, d = 256, f = 256;
    ExpertWeights w = mlp_weights(d, f, 41);
    std::vector<float> x = random_vec(n * d, 43, 1.0f), dy = random_vec(n * d, 44), y(n * d), h13, scratch;
    expert_forward_train(w, d, f, x, y, h13, scratch);
    ExpertWeights grad = mlp_zero_like(w);
    expert_backward(w, d, f, x, h13, dy, {}, grad, scratch);
    bwdtest::Vec act(size_t{n} * f), dh13(size_t{n} * 2 * f);
    for (int t = 0; t < n; ++t)
        for (int j = 0; j < f; ++j) {
            double dact = 0;
            for (int i = 0; i < d; ++i) dact += double{dy[t * d + i]} * w.w2[static_cast<size_t>(i) * f + j];
            const double a = h13[static_cast<size_t>(t) * 2 * f + j], b = h13[static_cast<size_t>(t) * 2 * f + f + j];
            const double sig = 1 / (1 + std::exp(-a));
            act[static_cast<size_t>(t) * f + j] = a * sig * b;
            dh13[static_cast<size_t>(t) * 2 * f + j] = dact * b * sig * (1 + a * (1 - sig));
            dh13[static_cast<size_t>(t) * 2 * f + f + j] = dact * a * sig;
        }
    bwdtest::Vec dw2(size_t{d} * f, 0.0), dw13(size_t{2} * f * d, 0.0);
    for (int t = 0; t < n; ++t) {
        for (int i = 0; i < d; ++i)
            for (int j = 0; j < f; ++j)
                dw2[static_cast<size_t>(i) * f + j] += dy[t * d + i] * act[static_cast<size_t>(t) * f + j];
        for (int r = 0; r < 2 * f; ++r)
            for (int i = 0; i < d; ++i)
                dw13[static_cast<size_t>(r) * d + i] += dh13[static_cast<size_t>(t) * 2 * f + r] * x[t * d + i];
    }
    EXPECT_LT(bwdtest::rel_l2(grad.w2, dw2), 1e-5);
    EXPECT_LT(bwdtest::rel_l2(grad.w13, dw13), 1e-5);
}

TEST(MlpBackward, SharedExpertMatchesFiniteDifferences) {
    const int n = 4, d = 6, f = 5;
    DenseMlp mlp{f, mlp_weights(d, f, 31)};
    std::vector<float> gate = random_vec(d, 33), x = random_vec(n * d, 34), r = random_vec(n * d, 35);
    std::vector<float> out = random_vec(n * d, 36), base = out, scratch;
    SharedExpertSaved saved;
    add_shared_expert_train(mlp, gate, d, x, out, saved, scratch);
    auto forward = [&] {  // sigmoid(gate . x) * mlp(x), in double
        const bwdtest::Vec xd = to_double(x), y = bwdtest::ref_swiglu(xd, d, f, mlp.w.w13, mlp.w.w2);
        bwdtest::Vec o(y.size());
        for (int t = 0; t < n; ++t) {
            double z = 0;
            for (int j = 0; j < d; ++j) z += gate[j] * xd[t * d + j];
            for (int j = 0; j < d; ++j) o[t * d + j] = y[t * d + j] / (1.0 + std::exp(-z));
        }
        return o;
    };
    const bwdtest::Vec ref = forward();
    for (int i = 0; i < n * d; ++i) EXPECT_NEAR(out[i] - base[i], ref[i], 1e-5);
    std::vector<float> dx(n * d, 0.0f), dgate(d, 0.0f);
    ExpertWeights grad = mlp_zero_like(mlp.w);
    shared_expert_backward(mlp, gate, d, x, saved, r, dx, grad, dgate, scratch);
    auto loss = [&] { return bwdtest::dot(forward(), r); };
    check_grad("shared dx", x, dx, loss);
    check_grad("shared dgate", gate, dgate, loss);
    check_grad("shared dw13", mlp.w.w13, grad.w13, loss);
    check_grad("shared dw2", mlp.w.w2, grad.w2, loss);
}

}  // namespace
}  // namespace epmoe
