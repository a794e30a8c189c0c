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

}  // namespace
}  // namespace epmoe
