// PackedLinear against a double-precision loop, a row's result against the batch it runs in, and linear() on W as
// given where the CPU has no brgemm (then it is what runs).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "epmoe/ops/packed_linear.hpp"

namespace epmoe {
namespace {

TEST(PackedLinear, MatchesPlainLoopAndRowsDoNotDependOnTheBatch) {
    const int out = 200, in = 72, rows = 37;  // not whole blocks of the packed layout
    std::vector<float> w(static_cast<size_t>(out) * in), x(static_cast<size_t>(rows) * in);
    for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.37f * static_cast<float>(i));
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.011f * static_cast<float>(i * i));
    const PackedLinear head(w, out, in);
    if (head.packed()) EXPECT_GE(head.packed_bytes(), w.size() * sizeof(float));
    std::vector<float> y(static_cast<size_t>(rows) * out);
    head.run(x, rows, y);
    for (int t = 0; t < rows; ++t) {
        double err = 0, norm = 0;
        for (int o = 0; o < out; ++o) {
            double ref = 0;
            for (int i = 0; i < in; ++i) ref += static_cast<double>(x[t * in + i]) * w[o * in + i];
            err += (y[t * out + o] - ref) * (y[t * out + o] - ref), norm += ref * ref;
        }
        EXPECT_LT(std::sqrt(err / norm), 1e-6) << "row " << t;
    }
    if (!head.packed()) GTEST_SKIP() << "no brgemm here: linear() runs, whose rows may depend on the batch";
    for (int n : {1, 2, 16, 36}) {
        std::vector<float> part(static_cast<size_t>(n) * out);
        head.run(std::span<const float>(x).first(static_cast<size_t>(n) * in), n, part);
        EXPECT_EQ(std::memcmp(part.data(), y.data(), part.size() * sizeof(float)), 0) << n << " rows";
    }
}

}  // namespace
}  // namespace epmoe
