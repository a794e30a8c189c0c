// Self-attention with a KV cache (src/ops/attention.cpp, src/ops/rope.cpp) against a plain double-precision loop
// written here from HF's eager attention: grouped-query heads, head_dim != d_model / num_heads, biases, both
// q/k norm kinds, a sliding window, RoPE at positions after a non-empty cache; and a prefill of n tokens against
// n one-token calls. linear and embed_tokens against their formulas.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "epmoe/ops/attention.hpp"

namespace epmoe::attention_test {

// A layer's shape for the tests: d_model and the decoder's attention fields.
struct Case {
    int d_model, num_heads, num_kv_heads, head_dim;
    bool bias = false;
    QkNorm qk_norm = QkNorm::kNone;
    int window = 0;
    double theta = 10000.0;

    DecoderShape shape() const {
        DecoderShape s;
        s.num_heads = num_heads;
        s.num_kv_heads = num_kv_heads;
        s.head_dim = head_dim;
        s.rope_theta = theta;
        s.sliding_window = window;
        s.qkv_bias = bias;
        s.qk_norm = qk_norm;
        return s;
    }
};

constexpr double kEps = 1e-6;

std::vector<float> uniform(size_t n, float lo, float hi, std::mt19937_64& rng) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

AttentionWeights make_weights(const Case& c, uint64_t seed) {
    std::mt19937_64 rng(seed);
    const size_t d = c.d_model, q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
    const float a = 1.5f / std::sqrt(static_cast<float>(c.d_model)), o = 1.0f / std::sqrt(static_cast<float>(q));
    AttentionWeights w;
    w.wq = uniform(q * d, -a, a, rng);
    w.wk = uniform(kv * d, -a, a, rng);
    w.wv = uniform(kv * d, -a, a, rng);
    w.wo = uniform(d * q, -o, o, rng);
    if (c.bias) {
        w.bq = uniform(q, -0.3f, 0.3f, rng);
        w.bk = uniform(kv, -0.3f, 0.3f, rng);
        w.bv = uniform(kv, -0.3f, 0.3f, rng);
        w.bo = uniform(d, -0.3f, 0.3f, rng);
    }
    if (c.qk_norm != QkNorm::kNone) {
        const bool whole = c.qk_norm == QkNorm::kWhole;
        w.q_norm = uniform(whole ? q : c.head_dim, 0.5f, 1.5f, rng);
        w.k_norm = uniform(whole ? kv : c.head_dim, 0.5f, 1.5f, rng);
    }
    return w;
}

// ---- The reference: HF's eager attention in double, one token at a time. ----

// Keys (after norm and RoPE) and values so far, [length, kv_dim] each.
struct RefCache {
    std::vector<double> k, v;
    int64_t length = 0;
};

// y [out] = W x + b in double.
std::vector<double> ref_linear(const float* x, int in, const std::vector<float>& w, const std::vector<float>& b,
                               int out) {
    std::vector<double> y(out);
    for (int o = 0; o < out; ++o) {
        double s = b.empty() ? 0.0 : b[o];
        for (int i = 0; i < in; ++i) s += static_cast<double>(w[o * in + i]) * x[i];
        y[o] = s;
    }
    return y;
}

// RMSNorm of each group of `len` values of y with weight g [len].
void ref_rms(std::vector<double>& y, int len, const std::vector<float>& g) {
    for (size_t r = 0; r < y.size(); r += len) {
        double ms = 0;
        for (int j = 0; j < len; ++j) ms += y[r + j] * y[r + j];
        const double inv = 1.0 / std::sqrt(ms / len + kEps);
        for (int j = 0; j < len; ++j) y[r + j] = y[r + j] * inv * g[j];
    }
}

// RoPE of every head of y at `position`. HF's angle is float32: inv_freq = 1.0f / powf(theta, float(2j) / dim),
// angle = float(position) * inv_freq; cos and sin of it in double.
void ref_rope(std::vector<double>& y, int head_dim, int64_t position, double theta) {
    const int half = head_dim / 2;
    for (size_t h = 0; h < y.size(); h += head_dim) {
        for (int j = 0; j < half; ++j) {
            const float inv = 1.0f / std::pow(static_cast<float>(theta), static_cast<float>(2 * j) / head_dim);
            const double angle = static_cast<float>(position) * inv;
            const double a = y[h + j], b = y[h + j + half];
            y[h + j] = a * std::cos(angle) - b * std::sin(angle);
            y[h + j + half] = b * std::cos(angle) + a * std::sin(angle);
        }
    }
}

// The attention output [d_model] of token x [d_model] at position cache.length; appends its key and value.
std::vector<double> ref_token(const Case& c, const AttentionWeights& w, const float* x, RefCache& cache) {
    const int hd = c.head_dim, q_dim = c.num_heads * hd, kv_dim = c.num_kv_heads * hd;
    std::vector<double> q = ref_linear(x, c.d_model, w.wq, w.bq, q_dim);
    std::vector<double> k = ref_linear(x, c.d_model, w.wk, w.bk, kv_dim);
    const std::vector<double> v = ref_linear(x, c.d_model, w.wv, w.bv, kv_dim);
    if (c.qk_norm != QkNorm::kNone) {
        ref_rms(q, c.qk_norm == QkNorm::kWhole ? q_dim : hd, w.q_norm);
        ref_rms(k, c.qk_norm == QkNorm::kWhole ? kv_dim : hd, w.k_norm);
    }
    const int64_t pos = cache.length;
    ref_rope(q, hd, pos, c.theta);
    ref_rope(k, hd, pos, c.theta);
    cache.k.insert(cache.k.end(), k.begin(), k.end());
    cache.v.insert(cache.v.end(), v.begin(), v.end());
    cache.length += 1;
    std::vector<float> context(q_dim);  // as the o projection reads it
    for (int h = 0; h < c.num_heads; ++h) {
        const int g = h / (c.num_heads / c.num_kv_heads);
        const int64_t first = c.window > 0 ? std::max<int64_t>(0, pos - c.window + 1) : 0;  // keys before: masked
        std::vector<double> p(pos + 1, 0.0);
        double max = -INFINITY, sum = 0;
        for (int64_t j = first; j <= pos; ++j) {
            double s = 0;
            for (int e = 0; e < hd; ++e) s += q[h * hd + e] * cache.k[j * kv_dim + g * hd + e];
            p[j] = s / std::sqrt(static_cast<double>(hd));
            max = std::max(max, p[j]);
        }
        for (int64_t j = first; j <= pos; ++j) sum += p[j] = std::exp(p[j] - max);
        for (int e = 0; e < hd; ++e) {
            double s = 0;
            for (int64_t j = first; j <= pos; ++j) s += p[j] / sum * cache.v[j * kv_dim + g * hd + e];
            context[h * hd + e] = static_cast<float>(s);
        }
    }
    return ref_linear(context.data(), q_dim, w.wo, w.bo, c.d_model);
}

// ---- Helpers running the implementation. ----

// attention() over x [n, d_model] in calls of the given sizes (summing to n): out [n, d_model].
std::vector<float> run_calls(const Case& c, const AttentionWeights& w, const std::vector<float>& x,
                             const std::vector<int64_t>& calls, KvCache& cache) {
    AttentionScratch scratch;
    std::vector<float> out(x.size());
    int64_t row = 0;
    for (const int64_t n : calls) {
        const size_t off = static_cast<size_t>(row) * c.d_model, len = static_cast<size_t>(n) * c.d_model;
        attention(w, c.shape(), c.d_model, kEps, std::span(x).subspan(off, len), n, cache,
                  std::span(out).subspan(off, len), scratch);
        row += n;
    }
    return out;
}

// Largest |got - want| over all values, relative to the largest |want|.
template <typename T>
double relative_error(const std::vector<float>& got, const std::vector<T>& want) {
    double err = 0, scale = 1e-30;
    for (size_t i = 0; i < want.size(); ++i) {
        err = std::max(err, std::abs(got[i] - static_cast<double>(want[i])));
        scale = std::max(scale, std::abs(static_cast<double>(want[i])));
    }
    return err / scale;
}

// Runs case c over `calls` tokens against the reference; returns the relative error of all outputs. q_scale
// multiplies wq: larger scores, a peakier softmax.
// packed: the implementation runs the projections packed (pack_projections), the reference the weights as made.
double error_against_reference(const Case& c, const std::vector<int64_t>& calls, uint64_t seed, float q_scale = 1.0f,
                               bool packed = false) {
    int64_t n = 0;
    for (const int64_t k : calls) n += k;
    std::mt19937_64 rng(seed);
    AttentionWeights w = make_weights(c, seed + 1);
    for (float& v : w.wq) v *= q_scale;
    const std::vector<float> x = uniform(static_cast<size_t>(n) * c.d_model, -1.0f, 1.0f, rng);
    RefCache ref_cache;
    std::vector<double> want;
    for (int64_t t = 0; t < n; ++t) {
        const std::vector<double> o = ref_token(c, w, x.data() + t * c.d_model, ref_cache);
        want.insert(want.end(), o.begin(), o.end());
    }
    if (packed) pack_projections(w, c.d_model, c.shape());
    KvCache cache;
    const std::vector<float> got = run_calls(c, w, x, calls, cache);
    EXPECT_EQ(cache.length, n);
    EXPECT_LT(relative_error(cache.k, ref_cache.k), 2e-6);
    EXPECT_LT(relative_error(cache.v, ref_cache.v), 2e-6);
    return relative_error(got, want);
}

// ---- Tests. ----

TEST(Attention, GroupedQueryWithBiasesMatchesReference) {
    // 4 query heads read 2 kv heads; head_dim 6 != d_model 10 / 4; calls of 5 then 4: RoPE after a cache of 5.
    const Case c{10, 4, 2, 6, /*bias=*/true};
    EXPECT_LT(error_against_reference(c, {5, 4}, 1), 2e-6);
}

TEST(Attention, MultiAndSingleKvHeadMatchReference) {
    EXPECT_LT(error_against_reference(Case{9, 3, 3, 4}, {7}, 2), 2e-6);         // one kv head per query head
    EXPECT_LT(error_against_reference(Case{12, 4, 1, 8}, {3, 1, 5}, 3), 2e-6);  // one kv head for all
}

TEST(Attention, WholeQkNormMatchesReference) {
    Case c{16, 4, 2, 4, false, QkNorm::kWhole};  // OLMoE: RMSNorm over [q_dim] and [kv_dim]
    EXPECT_LT(error_against_reference(c, {6, 1, 2}, 4), 2e-6);
}

TEST(Attention, PerHeadQkNormMatchesReference) {
    Case c{8, 4, 2, 16, false, QkNorm::kPerHead};  // Qwen3-MoE: RMSNorm of each head [head_dim]
    EXPECT_LT(error_against_reference(c, {4, 4}, 5), 2e-6);
}

TEST(Attention, SlidingWindowMatchesReference) {
    Case c{10, 4, 2, 6, true, QkNorm::kNone, /*window=*/3};
    EXPECT_LT(error_against_reference(c, {2, 5, 1, 1, 4}, 6), 2e-6);
}

TEST(Attention, LongPrefillAcrossQueryBlocksMatchesReference) {
    // 150 tokens span several blocks of query rows; the window reaches back across a block boundary.
    Case c{12, 4, 2, 8, true, QkNorm::kPerHead, /*window=*/37};
    EXPECT_LT(error_against_reference(c, {20, 130}, 7), 2e-6);
    c.window = 0;
    EXPECT_LT(error_against_reference(c, {150}, 8), 2e-6);
}

TEST(Attention, PackedProjectionsMatchReference) {
    // q|k|v stacked and o packed for the brgemm, biases added after (where this CPU packs; elsewhere the same path
    // as above): shapes off the 16 x 64 blocks, biases, q/k norms, a window.
    EXPECT_LT(error_against_reference(Case{10, 4, 2, 6, /*bias=*/true}, {5, 4}, 11, 1.0f, true), 2e-6);
    EXPECT_LT(error_against_reference(Case{16, 4, 2, 4, false, QkNorm::kWhole}, {6, 1, 2}, 12, 1.0f, true), 2e-6);
    EXPECT_LT(error_against_reference(Case{12, 4, 2, 8, true, QkNorm::kPerHead, 37}, {20, 130}, 13, 1.0f, true), 2e-6);
}

TEST(Attention, PackedProjectionsDropTheFp32Copies) {
    const Case c{64, 4, 2, 16, /*bias=*/true};
    AttentionWeights w = make_weights(c, 14);
    const size_t stacked = w.wq.size() + w.wk.size() + w.wv.size();
    pack_projections(w, c.d_model, c.shape());
    if (!w.packed) GTEST_SKIP() << "PackedLinear does not pack on this CPU (no AVX-512)";
    EXPECT_TRUE(w.wq.empty() && w.wk.empty() && w.wv.empty() && w.wo.empty());
    EXPECT_FALSE(w.bq.empty());  // biases stay: added after the packed GEMM
    EXPECT_GE(w.packed->qkv.packed_bytes(), stacked * sizeof(float));
    EXPECT_GE(w.packed->o.packed_bytes(), size_t{64} * 64 * sizeof(float));
}

TEST(Attention, SlidingWindowAveragesExactlyTheLastKeys) {
    // q = 0 gives equal scores, v = x and o = identity: the output is the mean of the last 3 inputs.
    Case c{4, 2, 2, 2, false, QkNorm::kNone, /*window=*/3};
    AttentionWeights w = make_weights(c, 9);
    std::fill(w.wq.begin(), w.wq.end(), 0.0f);
    std::fill(w.wv.begin(), w.wv.end(), 0.0f);
    std::fill(w.wo.begin(), w.wo.end(), 0.0f);
    for (int i = 0; i < 4; ++i) w.wv[i * 4 + i] = w.wo[i * 4 + i] = 1.0f;
    std::vector<float> x(8 * 4);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i * i % 11);
    KvCache cache;
    const std::vector<float> out = run_calls(c, w, x, {5, 3}, cache);
    for (int t = 0; t < 8; ++t) {
        const int first = std::max(0, t - 2);
        for (int e = 0; e < 4; ++e) {
            double mean = 0;
            for (int j = first; j <= t; ++j) mean += x[j * 4 + e];
            EXPECT_NEAR(out[t * 4 + e], mean / (t - first + 1), 1e-5) << "token " << t << " dim " << e;
        }
    }
}

TEST(AttentionRope, LargePositionsUseFloat32Angles) {
    // Positions 20000.. after a cache of 20000 tokens, with peaky scores: HF's float32 angles (float32 inv_freq
    // times the position, rounded to float32) are ~1e-3 rad from exact ones here. Measured: 2e-7 against the
    // float32-angle reference, 2e-5 against a double-angle one (and 8e-5 in the cached keys).
    Case c{8, 2, 1, 8, false, QkNorm::kNone, /*window=*/6, 500000.0};
    EXPECT_LT(error_against_reference(c, {20000, 5, 1}, 10, /*q_scale=*/4.0f), 2e-6);
}

TEST(Attention, PrefillEqualsOneTokenCalls) {
    // A prefill of n tokens gives, row by row, what n one-token calls give, after a prefix in the cache.
    const Case cases[] = {{32, 4, 2, 16, true, QkNorm::kNone, 0},
                          {24, 6, 3, 8, false, QkNorm::kWhole, 50},
                          {16, 4, 1, 12, false, QkNorm::kPerHead, 0},
                          {20, 5, 5, 4, true, QkNorm::kNone, 0}};
    for (const Case& c : cases) {
        std::mt19937_64 rng(11);
        const AttentionWeights w = make_weights(c, 12);
        const int64_t prefix = 17, n = 140;
        const std::vector<float> x = uniform(static_cast<size_t>(prefix + n) * c.d_model, -1.0f, 1.0f, rng);
        KvCache a, b;
        const std::vector<float> once = run_calls(c, w, x, {prefix, n}, a);
        std::vector<int64_t> singles(static_cast<size_t>(n), 1);
        singles.insert(singles.begin(), prefix);
        const std::vector<float> each = run_calls(c, w, x, singles, b);
        for (int64_t t = prefix; t < prefix + n; ++t) {
            const auto row = [&](const std::vector<float>& v) {
                return std::vector<float>(v.begin() + t * c.d_model, v.begin() + (t + 1) * c.d_model);
            };
            EXPECT_LT(relative_error(row(once), row(each)), 1e-5) << "token " << t << " window " << c.window;
        }
        EXPECT_EQ(a.length, b.length);
        EXPECT_LT(relative_error(a.k, b.k), 1e-6);
        EXPECT_LT(relative_error(a.v, b.v), 1e-6);
    }
}

TEST(Attention, NoTokensChangesNothing) {
    const Case c{10, 4, 2, 6};
    const AttentionWeights w = make_weights(c, 13);
    KvCache cache;
    AttentionScratch scratch;
    attention(w, c.shape(), c.d_model, kEps, {}, 0, cache, {}, scratch);
    EXPECT_EQ(cache.length, 0);
    EXPECT_TRUE(cache.k.empty());
}

TEST(AttentionLinear, MatchesFormulaWithAndWithoutBias) {
    std::mt19937_64 rng(14);
    const int n = 5, in = 7, out = 3;
    const std::vector<float> x = uniform(n * in, -1, 1, rng), w = uniform(out * in, -1, 1, rng);
    const std::vector<float> b = uniform(out, -1, 1, rng);
    for (const bool with_bias : {false, true}) {
        std::vector<float> y(n * out);
        linear(x, n, in, w, with_bias ? b : std::vector<float>{}, out, y);
        for (int t = 0; t < n; ++t) {
            const std::vector<double> want =
                ref_linear(x.data() + t * in, in, w, with_bias ? b : std::vector<float>{}, out);
            for (int o = 0; o < out; ++o) EXPECT_NEAR(y[t * out + o], want[o], 1e-5);
        }
    }
}

TEST(AttentionEmbed, CopiesRowsOfTheTable) {
    const std::vector<float> table = {0, 1, 10, 11, 20, 21};  // [3, 2]
    const std::vector<int32_t> ids = {2, 0, 2};
    std::vector<float> out(6);
    embed_tokens(table, 2, ids, out);
    EXPECT_EQ(out, (std::vector<float>{20, 21, 0, 1, 20, 21}));
}

}  // namespace epmoe::attention_test
