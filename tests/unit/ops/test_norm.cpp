// RMSNorm (src/ops/norm.cpp) against the formula, in double precision.
// The suite keeps its name from tests/unit/test_router.cpp, where this test was before the move.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "epmoe/model/synthetic.hpp"
#include "epmoe/ops/norm.hpp"

namespace epmoe {
namespace {

std::vector<float> norm_input(size_t n, uint64_t seed, float scale = 1.0f) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = scale * (2.0f * hash_uniform(seed, 99, i, 0) - 1.0f);
    return v;
}

TEST(Router, RmsNormMatchesFormula) {
    const int d = 7;
    std::vector<float> x = norm_input(3 * d, 1, 3.0f), g = norm_input(d, 2), out(3 * d);
    rms_norm(x, g, 1e-5, out);
    for (int t = 0; t < 3; ++t) {
        double ms = 0;
        for (int j = 0; j < d; ++j) ms += x[t * d + j] * x[t * d + j];
        ms /= d;
        for (int j = 0; j < d; ++j) EXPECT_NEAR(out[t * d + j], x[t * d + j] / std::sqrt(ms + 1e-5) * g[j], 1e-5);
    }
}

}  // namespace
}  // namespace epmoe
