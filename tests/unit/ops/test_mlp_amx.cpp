// amx/bf16 (src/ops/mlp_amx.cpp) against a plain double-precision loop with the kernel's BF16 roundings,
// batching invariance (a row's output bit-identical alone or among others), NaN/Inf against the FP32
// kernel, padding (rows, d_model and d_ff not multiples of 32), packed sizes and the backend choice. Skips
// where the CPU has no AMX-BF16 or Linux refuses the tile state.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "epmoe/base/error.hpp"
#include "epmoe/ops/bf16.hpp"
#include "epmoe/ops/mlp_kernel.hpp"

namespace epmoe {
namespace amx_test {  // named: the unity build compiles several test files as one unit

// The amx/bf16 kernel, or null after GTEST_SKIP where this CPU or process cannot run it.
std::shared_ptr<const MlpKernel> amx_or_null() {
    const Bf16Support& s = bf16_support();
    if (!s.amx_permitted) return nullptr;
    return make_mlp_kernel("amx", "bf16");
}
#define AMX_OR_SKIP(kernel)                                  \
    std::shared_ptr<const MlpKernel> kernel = amx_or_null(); \
    if (kernel == nullptr) GTEST_SKIP() << "no AMX-BF16 here: " << bf16_support().amx_detail;

std::vector<float> uniform(size_t n, float scale, unsigned seed) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> u(-scale, scale);
    std::vector<float> v(n);
    for (float& x : v) x = u(gen);
    return v;
}

// One MLP's FP32 weights: w13 [2 f, d], w2 [d, f], scaled so that activations stay O(1).
ExpertWeights random_mlp(int d, int f, unsigned seed) {
    ExpertWeights w;
    w.w13 = uniform(2ull * f * d, std::sqrt(3.0f / d), seed);
    w.w2 = uniform(1ull * d * f, std::sqrt(3.0f / f), seed + 1);
    return w;
}

double bf(float v) { return from_bf16(to_bf16(v)); }

// Row t of y = W2 · bf16(silu(W1 · x) ⊙ (W3 · x)) in double, x and the weights rounded to BF16 as the
// kernel rounds them; W2's input h rounded to BF16 from the FP32 value of silu(a) * b, as the kernel does.
// The kernel sums a and b in FP32, so an h next to a BF16 rounding boundary may round the other way: one
// such flip moves y by 2^-8 |h_j w2_ij|, ~1e-5 of |y| here (bound below: 1e-3).
std::vector<double> reference_row(const ExpertWeights& w, int d, int f, const float* x) {
    std::vector<double> h(f), y(d);
    for (int j = 0; j < f; ++j) {
        double a = 0, b = 0;
        for (int i = 0; i < d; ++i) {
            a += bf(w.w13[1ull * j * d + i]) * bf(x[i]);
            b += bf(w.w13[1ull * (f + j) * d + i]) * bf(x[i]);
        }
        h[j] = bf(static_cast<float>(a / (1 + std::exp(-a)) * b));
    }
    for (int i = 0; i < d; ++i)
        for (int j = 0; j < f; ++j) y[i] += bf(w.w2[1ull * i * f + j]) * h[j];
    return y;
}

double rel_l2(const float* got, const std::vector<double>& want) {
    double num = 0, den = 0;
    for (size_t i = 0; i < want.size(); ++i) num += (got[i] - want[i]) * (got[i] - want[i]), den += want[i] * want[i];
    return std::sqrt(num / den);
}

std::vector<float> run(const MlpKernel& k, const ExpertWeights& w, int d, int f, const std::vector<float>& x) {
    std::vector<float> y(x.size(), -1.0f), scratch;
    k.forward(w, d, f, x, y, scratch);
    return y;
}

// Small odd shapes (d_model 20-64, d_ff 36-80: K and N padded to 32) at row counts around the 16-row
// tiles and 32-row blocks.
TEST(AmxBf16, MatchesBf16ReferenceOnSmallShapes) {
    AMX_OR_SKIP(kernel);
    EXPECT_EQ(kernel->name(), "amx/bf16");
    for (auto [d, f] : {std::pair{32, 48}, std::pair{64, 80}, std::pair{40, 72}, std::pair{20, 36}, {48, 64}}) {
        const ExpertWeights fp32 = random_mlp(d, f, 11);
        ExpertWeights w = fp32;
        kernel->prepare(w, d, f);
        for (int n : {0, 1, 15, 16, 17, 33, 70}) {
            const std::vector<float> x = uniform(1ull * n * d, 1.5f, 100 + n);
            const std::vector<float> y = run(*kernel, w, d, f, x);
            double worst = 0;
            for (int t = 0; t < n; ++t)
                worst = std::max(worst, rel_l2(&y[1ull * t * d], reference_row(fp32, d, f, &x[1ull * t * d])));
            EXPECT_LT(worst, 1e-3) << "d_model " << d << " d_ff " << f << " rows " << n;
            RecordProperty(cat("worst_row_rel_l2_d", d, "_f", f, "_n", n), std::to_string(worst));
        }
    }
}

// The expert shape (d_model 1024, d_ff 3584: K 3584 sums in FP32), a few rows checked of 40.
TEST(AmxBf16, MatchesBf16ReferenceOnTheExpertShape) {
    AMX_OR_SKIP(kernel);
    const int d = 1024, f = 3584, n = 40;
    const ExpertWeights fp32 = random_mlp(d, f, 21);
    ExpertWeights w = fp32;
    kernel->prepare(w, d, f);
    EXPECT_TRUE(w.w13.empty() && w.w2.empty()) << "the FP32 copies must go";
    EXPECT_EQ(w.prepared_bytes, 3ull * d * f * 2) << "no padding at this shape: BF16 bytes";
    const std::vector<float> x = uniform(1ull * n * d, 1.0f, 22);
    const std::vector<float> y = run(*kernel, w, d, f, x);
    for (int t : {0, 17, 39}) {
        const double err = rel_l2(&y[1ull * t * d], reference_row(fp32, d, f, &x[1ull * t * d]));
        EXPECT_LT(err, 1e-3) << "row " << t;
        RecordProperty(cat("expert_row_", t, "_rel_l2"), std::to_string(err));
    }
}

// A token's output must not depend on how many rows share its call, nor on its place among them: every
// sum runs over K in the same order whatever the blocking (rank-count invariance of epmoe).
void expect_batch_invariant(const MlpKernel& k, int d, int f, int n, const std::vector<int>& alone,
                            std::pair<int, int> slice) {
    ExpertWeights w = random_mlp(d, f, 31);
    k.prepare(w, d, f);
    const std::vector<float> x = uniform(1ull * n * d, 1.0f, 32);
    const std::vector<float> all = run(k, w, d, f, x);
    for (int t : alone) {
        const std::vector<float> one(x.begin() + 1ll * t * d, x.begin() + 1ll * (t + 1) * d);
        EXPECT_EQ(std::memcmp(run(k, w, d, f, one).data(), &all[1ull * t * d], d * sizeof(float)), 0)
            << "row " << t << " of " << n << " computed alone differs (d_model " << d << ", d_ff " << f << ")";
    }
    const auto [first, count] = slice;
    const std::vector<float> part(x.begin() + 1ll * first * d, x.begin() + 1ll * (first + count) * d);
    EXPECT_EQ(std::memcmp(run(k, w, d, f, part).data(), &all[1ull * first * d], part.size() * sizeof(float)), 0)
        << "rows " << first << " .. " << first + count - 1 << " computed as their own batch differ";
}

TEST(AmxBf16, RowResultsDoNotDependOnTheBatch) {
    AMX_OR_SKIP(kernel);
    std::vector<int> every(1000);
    for (int t = 0; t < 1000; ++t) every[t] = t;
    expect_batch_invariant(*kernel, 64, 80, 1000, every, {7, 33});
    // The expert shape over several row chunks of both passes (W2's chunk is 128 rows).
    expect_batch_invariant(*kernel, 1024, 3584, 300, {0, 31, 32, 150, 299}, {140, 33});
}

// NaN and Inf in x: the affected rows are NaN / Inf exactly where the FP32 kernel's are, the other rows
// are the same bits as without them.
TEST(AmxBf16, NanAndInfPropagateAsInFp32) {
    AMX_OR_SKIP(kernel);
    const int d = 40, f = 72, n = 6;
    const ExpertWeights fp32 = random_mlp(d, f, 41);
    ExpertWeights w = fp32;
    kernel->prepare(w, d, f);
    std::vector<float> x = uniform(1ull * n * d, 1.0f, 42);
    const std::vector<float> clean = run(*kernel, w, d, f, x);
    const float inf = std::numeric_limits<float>::infinity();
    x[1 * d + 3] = std::numeric_limits<float>::quiet_NaN();
    x[2 * d + 5] = inf;
    x[3 * d + 0] = -inf;
    x[4 * d + 9] = 1e30f;  // finite, but W1 x and W3 x ~1e28: h overflows to Inf
    const std::vector<float> got = run(*kernel, w, d, f, x);
    ExpertWeights w32 = fp32;
    std::shared_ptr<const MlpKernel> ref = make_mlp_kernel("onednn", "fp32");
    ref->prepare(w32, d, f);
    const std::vector<float> want = run(*ref, w32, d, f, x);
    for (int t = 1; t <= 4; ++t)
        for (int i = 0; i < d; ++i) {
            const size_t k = 1ull * t * d + i;
            EXPECT_EQ(std::isnan(got[k]), std::isnan(want[k])) << "row " << t << " col " << i << ": " << got[k];
            EXPECT_EQ(std::isinf(got[k]) ? std::signbit(got[k]) + 1 : 0,
                      std::isinf(want[k]) ? std::signbit(want[k]) + 1 : 0)
                << "row " << t << " col " << i << ": " << got[k] << " vs " << want[k];
        }
    for (int t : {0, 5})
        EXPECT_EQ(std::memcmp(&got[1ull * t * d], &clean[1ull * t * d], d * sizeof(float)), 0) << "row " << t;
    EXPECT_TRUE(std::isnan(got[1 * d])) << "a NaN in x makes its whole row NaN";
}

// prepare() keeps only the tiles: W1|W3 as ceil(d_ff / 32) * 2 panels of ceil(d_model / 32) steps, W2 as
// ceil(d_model / 32) panels of ceil(d_ff / 32) steps, 2 KiB a step.
TEST(AmxBf16, PreparedBytesAreThePaddedTiles) {
    AMX_OR_SKIP(kernel);
    for (auto [d, f] : {std::pair{32, 48}, std::pair{20, 36}, std::pair{64, 64}}) {
        ExpertWeights w = random_mlp(d, f, 51);
        kernel->prepare(w, d, f);
        const uint64_t kb13 = (d + 31) / 32, kb2 = (f + 31) / 32, panels2 = (d + 31) / 32;
        EXPECT_EQ(w.prepared_bytes, (2 * kb2 * kb13 + panels2 * kb2) * 2048) << d << " x " << f;
        EXPECT_TRUE(w.w13.empty() && w.w2.empty());
        EXPECT_NE(w.prepared, nullptr);
    }
}

// A view of the packed tiles copied elsewhere (a host's shared window) runs the same bits and counts the same bytes.
TEST(AmxBf16, ViewOfCopiedTilesGivesTheSameBits) {
    AMX_OR_SKIP(kernel);
    const int d = 40, f = 72;
    ExpertWeights w = random_mlp(d, f, 61);
    kernel->prepare(w, d, f);
    const MlpArrays a = kernel->arrays(w, d, f);
    EXPECT_EQ(a.w13.size() + a.w2.size(), w.prepared_bytes);
    auto copy = std::make_shared<std::vector<std::byte>>(a.w13.size() + a.w2.size());
    std::copy(a.w13.begin(), a.w13.end(), copy->data());
    std::copy(a.w2.begin(), a.w2.end(), copy->data() + a.w13.size());
    const ExpertWeights view = kernel->view(copy->data(), copy->data() + a.w13.size(), d, f, copy);
    EXPECT_EQ(view.prepared_bytes, w.prepared_bytes);
    const std::vector<float> x = uniform(9ull * d, 1.0f, 62);
    const std::vector<float> y = run(*kernel, w, d, f, x), y_view = run(*kernel, view, d, f, x);
    EXPECT_EQ(std::memcmp(y.data(), y_view.data(), y.size() * sizeof(float)), 0);
}

// auto + bf16 is amx exactly where the probe says AMX can run: a property of the machine, not a timing.
TEST(AmxBf16, AutoPicksAmxWhereItRuns) {
    const Bf16Support& s = bf16_support();
    EXPECT_EQ(resolve_backend("auto", "bf16"), s.amx_permitted ? "amx" : "onednn");
    EXPECT_EQ(resolve_backend("auto", "bf16"), resolve_backend("auto", "bf16")) << "a fixed rule";
    EXPECT_EQ(s.amx_permitted, s.amx_bf16 && s.amx_detail.empty());
    try {
        make_mlp_kernel("amx", "fp32");
        ADD_FAILURE() << "amx runs bf16 only";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("compute.dtype = \"fp32\""), std::string::npos) << e.what();
    }
    if (s.amx_permitted) return;
    try {
        make_mlp_kernel("amx", "bf16");
        ADD_FAILURE() << "amx made on a CPU without AMX";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("compute.backend = \"amx\""), std::string::npos) << e.what();
    }
}

}  // namespace amx_test
}  // namespace epmoe
