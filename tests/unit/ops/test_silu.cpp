// silu_mul_rows and silu_mul_bf16_block (src/ops/silu.cpp, a vectorised exp) against a plain double-precision
// loop.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../../../src/ops/fast_exp.hpp"
#include "epmoe/ops/bf16.hpp"
#include "epmoe/ops/mlp_kernel.hpp"

namespace epmoe {
namespace {

// Every row of h = [a | b] becomes [silu(a) * b | b]; checks the left half against double precision.
TEST(Silu, MatchesDoubleLoopOverTheWholeRange) {
    const int d_ff = 1000, rows = 3;
    std::vector<float> h(2ull * d_ff * rows), want(h.size());
    for (int t = 0; t < rows; ++t)
        for (int j = 0; j < d_ff; ++j) {
            // a sweeps [-120, 120] (past the clamp at -87/88 on both sides); b is not 1, to test the product.
            h[2ull * t * d_ff + j] = -120.0f + 240.0f * (t * d_ff + j) / (rows * d_ff - 1);
            h[2ull * t * d_ff + d_ff + j] = 0.5f + 0.001f * j;
        }
    for (size_t i = 0; i < h.size(); ++i) {
        const size_t col = i % (2ull * d_ff);
        if (col >= static_cast<size_t>(d_ff)) continue;
        const double a = h[i], b = h[i + d_ff];
        want[i] = static_cast<float>(a / (1.0 + std::exp(-a)) * b);
    }
    std::vector<float> got = h;
    silu_mul_rows(got.data(), rows, d_ff);
    std::vector<float> act(static_cast<size_t>(rows) * d_ff);  // silu_mul_rows_to: the same bits, h untouched
    const std::vector<float> h_before = h;
    silu_mul_rows_to(h.data(), act.data(), rows, d_ff, d_ff);
    EXPECT_EQ(h, h_before);
    for (int t = 0; t < rows; ++t)
        for (int j = 0; j < d_ff; ++j)
            EXPECT_EQ(std::bit_cast<uint32_t>(act[static_cast<size_t>(t) * d_ff + j]),
                      std::bit_cast<uint32_t>(got[2ull * t * d_ff + j]));
    // Into columns of a wider act (a panel's columns, rows act_ld apart): the same bits, the other columns untouched.
    const int64_t ld = d_ff + 7;
    std::vector<float> wide(static_cast<size_t>(rows * ld), -3.0f);
    silu_mul_rows_to(h.data(), wide.data() + 5, rows, d_ff, ld);
    for (int t = 0; t < rows; ++t)
        for (int64_t j = 0; j < ld; ++j) {
            const float w = wide[static_cast<size_t>(t * ld + j)];
            if (j < 5 || j >= 5 + d_ff)
                EXPECT_EQ(w, -3.0f) << "column " << j << " is not the panel's";
            else
                EXPECT_EQ(std::bit_cast<uint32_t>(w),
                          std::bit_cast<uint32_t>(act[static_cast<size_t>(t) * d_ff + j - 5]));
        }
    int checked = 0;
    for (size_t i = 0; i < h.size(); ++i) {
        const size_t col = i % (2ull * d_ff);
        if (col >= static_cast<size_t>(d_ff)) {
            EXPECT_EQ(got[i], h[i]) << "the right half (W3 x) must stay as it was, at " << i;
            continue;
        }
        const double tol = 4e-7 * std::fabs(want[i]) + 1e-30;
        EXPECT_NEAR(got[i], want[i], tol) << "a = " << h[i];
        ++checked;
    }
    EXPECT_EQ(checked, rows * d_ff);
}

TEST(Silu, LargeNegativeGoesToZeroAndLargePositiveToIdentity) {
    std::vector<float> h = {-1e4f, 1e4f, 0.0f, 1.0f, 1.0f, 1.0f};  // one row, d_ff 3: a = [-1e4, 1e4, 0]
    silu_mul_rows(h.data(), 1, 3);
    EXPECT_LE(std::fabs(h[0]), 1e-30f);
    EXPECT_FLOAT_EQ(h[1], 1e4f);
    EXPECT_EQ(h[2], 0.0f);
}

// The amx/bf16 epilogue: 8 rows of [16 gate | 16 up] -> 16 BF16 a row at a stride, within one BF16 rounding
// of the double value (the FP32 one may sit on the other side of a rounding boundary); NaN stays NaN.
TEST(Silu, Bf16BlockMatchesDoubleWithinOneBf16Rounding) {
    std::vector<float> ab(kSiluBlockRows * 2 * kSiluBlockCols);
    for (int r = 0; r < kSiluBlockRows; ++r)
        for (int j = 0; j < kSiluBlockCols; ++j) {
            ab[r * 32 + j] = -100.0f + 200.0f * (r * 16 + j) / 127.0f;  // past the clamp on both sides
            ab[r * 32 + 16 + j] = 0.75f + 0.01f * j;
        }
    ab[5] = std::numeric_limits<float>::quiet_NaN();
    const int ld = 40;  // BF16 values between output rows
    std::vector<uint16_t> out(kSiluBlockRows * ld, 0xdead);
    {
        FlushSubnormals flush;
        silu_mul_bf16_block(ab.data(), out.data(), ld);
    }
    for (int r = 0; r < kSiluBlockRows; ++r)
        for (int j = 0; j < ld; ++j) {
            const uint16_t got = out[r * ld + j];
            if (j >= kSiluBlockCols) {
                EXPECT_EQ(got, 0xdead) << "wrote past its 16 columns at row " << r;
                continue;
            }
            const double a = ab[r * 32 + j], want = a / (1.0 + std::exp(-a)) * ab[r * 32 + 16 + j];
            if (std::isnan(a)) {
                EXPECT_TRUE(std::isnan(from_bf16(got)));
                continue;
            }
            EXPECT_NEAR(from_bf16(got), want, std::fabs(want) / 128 + 1e-30) << "a = " << a;
        }
}

// The loss's double exp (src/ops/fast_exp.hpp) against libm over its whole range, and its clamp below -708.
TEST(FastExp, DoubleNonPositiveWithinAFewUlpOfLibm) {
    double worst = 0;
    for (int i = 0; i <= 200000; ++i) {
        const double x = -708.0 * i / 200000.0 - 1e-3 * (i % 7);  // irregular points, -708 .. 0
        if (x < -708.0) continue;
        const double want = std::exp(x);
        worst = std::max(worst, std::fabs(fast::exp_nonpositive(x) - want) / want);
    }
    EXPECT_LT(worst, 5e-16);
    EXPECT_EQ(fast::exp_nonpositive(0.0), 1.0);
    EXPECT_EQ(fast::exp_nonpositive(-1e4), fast::exp_nonpositive(-708.0));
    EXPECT_GT(fast::exp_nonpositive(-1e4), 0.0);
}

// The SwiGLU backward's elementwise pass against a double loop: act = silu(a) b, db = dact silu(a),
// da = dact b silu'(a).
TEST(Silu, BackwardRowsMatchDoubleLoop) {
    const int rows = 3, d_ff = 37;
    std::vector<float> h13(2 * rows * d_ff), dh13(2 * rows * d_ff), act(rows * d_ff);
    for (size_t i = 0; i < h13.size(); ++i) {
        h13[i] = -30.0f + 60.0f * static_cast<float>((i * 7919) % h13.size()) / static_cast<float>(h13.size());
        dh13[i] = 0.5f - 0.01f * static_cast<float>(i % 100);
    }
    const std::vector<float> dact = dh13;
    silu_mul_backward_rows(h13.data(), dh13.data(), act.data(), rows, d_ff);
    for (int t = 0; t < rows; ++t)
        for (int j = 0; j < d_ff; ++j) {
            const double a = h13[t * 2 * d_ff + j], b = h13[t * 2 * d_ff + d_ff + j], g = dact[t * 2 * d_ff + j];
            const double sig = 1.0 / (1.0 + std::exp(-a)), silu = a * sig;
            const double want[3] = {silu * b, g * silu, g * b * sig * (1.0 + a * (1.0 - sig))};
            const float got[3] = {act[t * d_ff + j], dh13[t * 2 * d_ff + d_ff + j], dh13[t * 2 * d_ff + j]};
            for (int q = 0; q < 3; ++q)
                EXPECT_NEAR(got[q], want[q], 1e-6 * std::fabs(want[q]) + 1e-30) << q << " a " << a;
        }
}

}  // namespace
}  // namespace epmoe
