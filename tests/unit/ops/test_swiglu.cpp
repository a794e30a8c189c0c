// SwiGLU expert on OpenBLAS against a plain double-precision loop.
#include <gtest/gtest.h>

#include <cmath>

#include "epmoe/model/synthetic.hpp"
#include "epmoe/ops/swiglu.hpp"

namespace epmoe {
namespace {

TEST(Expert, MatchesPlainLoop) {
    const int d = 20, f = 36;
    for (int n : {0, 1, 5, 33}) {
        ModelShape shape;
        shape.num_layers = 1, shape.d_model = d, shape.d_ff = f, shape.num_experts = 1, shape.top_k = 1;
        Model m = make_synthetic_model(shape, 3, [](int, int) { return true; });
        const ExpertWeights& w = m.layers[0].experts.at(0);
        std::vector<float> x(n * d), y(n * d), scratch;
        for (int i = 0; i < n * d; ++i) x[i] = std::sin(0.37f * i);
        expert_forward(*m.kernel, w, d, f, x, y, scratch);
        for (int t = 0; t < n; ++t) {
            std::vector<double> act(f);
            for (int j = 0; j < f; ++j) {
                double a = 0, b = 0;
                for (int i = 0; i < d; ++i) {
                    a += double(w.w13[j * d + i]) * x[t * d + i];
                    b += double(w.w13[(f + j) * d + i]) * x[t * d + i];
                }
                act[j] = a / (1 + std::exp(-a)) * b;
            }
            for (int i = 0; i < d; ++i) {
                double ref = 0;
                for (int j = 0; j < f; ++j) ref += double(w.w2[i * f + j]) * act[j];
                EXPECT_NEAR(y[t * d + i], ref, 1e-5 * (1 + std::abs(ref))) << "n=" << n << " t=" << t;
            }
        }
    }
}

}  // namespace
}  // namespace epmoe
