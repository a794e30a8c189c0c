// Gate logits (src/ops/gate.cpp): every logit is a row dot product, against a double-precision loop.
// The suite keeps its name from tests/unit/test_router.cpp, where this test was before the move.
#include <gtest/gtest.h>

#include <vector>

#include "epmoe/model/synthetic.hpp"
#include "epmoe/ops/gate.hpp"

namespace epmoe {
namespace {

std::vector<float> gate_input(size_t n, uint64_t seed) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = 2.0f * hash_uniform(seed, 99, i, 0) - 1.0f;
    return v;
}

TEST(Router, GateLogitsAreRowDotProducts) {
    const int d = 13, e = 5, n = 4;
    std::vector<float> x = gate_input(n * d, 3), w = gate_input(e * d, 4), logits(n * e);
    gate_logits(x, w, d, e, logits);
    for (int t = 0; t < n; ++t)
        for (int k = 0; k < e; ++k) {
            double z = 0;
            for (int j = 0; j < d; ++j) z += double(x[t * d + j]) * w[k * d + j];
            EXPECT_NEAR(logits[t * e + k], z, 1e-6);
        }
}

// The order gate.hpp promises: lane j mod 8 in double, the lanes summed in a fixed tree, then the tail. Every
// block of rows and every instruction set must give exactly these bits, and a row alone the same as in a batch.
float ordered_logit(const float* x, const float* w, int d) {
    double lane[8] = {};
    const int body = d / 8 * 8;
    for (int j = 0; j < body; ++j) lane[j % 8] += double(x[j]) * w[j];
    double sum = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    for (int j = body; j < d; ++j) sum += double(x[j]) * w[j];
    return static_cast<float>(sum);
}

TEST(Router, GateLogitsKeepOneOrderInEveryBlock) {
    const int d = 1029, e = 7, n = 11;  // a tail of 5 elements; 11 rows: blocks of 4 and a short one
    std::vector<float> x = gate_input(n * d, 5), w = gate_input(e * d, 6), logits(n * e), alone(e);
    gate_logits(x, w, d, e, logits);
    for (int t = 0; t < n; ++t) {
        gate_logits(std::span<const float>(&x[t * d], d), w, d, e, alone);
        for (int k = 0; k < e; ++k) {
            EXPECT_EQ(logits[t * e + k], ordered_logit(&x[t * d], &w[k * d], d)) << "row " << t << " expert " << k;
            EXPECT_EQ(alone[k], logits[t * e + k]) << "row " << t << " expert " << k;
        }
    }
}

}  // namespace
}  // namespace epmoe
