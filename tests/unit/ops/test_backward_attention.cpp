// The backward of one sequence's attention (ops/attention_backward.hpp) against central finite differences of a
// double-precision HF-style attention: GQA (4 query heads on 2 kv heads), head_dim != d_model / heads, a
// sliding window shorter than the sequence, q/k norm over the whole projection (OLMoE) and per head (Qwen3),
// q/k/v and o biases (Qwen2-MoE's q/k/v; o's for the linear's own path).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "backward_check.hpp"
#include "epmoe/ops/attention.hpp"
#include "epmoe/ops/attention_backward.hpp"

namespace epmoe {
namespace {

using bwdtest::check_grad;
using bwdtest::random_vec;
using bwdtest::to_double;

struct AttnCase {
    std::string name;
    int num_heads, num_kv_heads, head_dim, window;
    QkNorm qk_norm;
    bool bias;
    int n = 7;
    double theta = 10000;
};

AttentionWeights attn_weights(const DecoderShape& s, int d, bool bias, uint64_t seed) {
    const int q_dim = s.num_heads * s.head_dim, kv_dim = s.num_kv_heads * s.head_dim;
    AttentionWeights w;
    w.wq = random_vec(q_dim * d, seed, 0.7f);
    w.wk = random_vec(kv_dim * d, seed + 1, 0.7f);
    w.wv = random_vec(kv_dim * d, seed + 2, 0.7f);
    w.wo = random_vec(d * q_dim, seed + 3, 0.5f);
    if (bias) {
        w.bq = random_vec(q_dim, seed + 4, 0.5f);
        w.bk = random_vec(kv_dim, seed + 5, 0.5f);
        w.bv = random_vec(kv_dim, seed + 6, 0.5f);
        w.bo = random_vec(d, seed + 7, 0.5f);
    }
    if (s.qk_norm != QkNorm::kNone) {
        const bool whole = s.qk_norm == QkNorm::kWhole;
        w.q_norm = random_vec(whole ? q_dim : s.head_dim, seed + 8, 0.3f);
        w.k_norm = random_vec(whole ? kv_dim : s.head_dim, seed + 9, 0.3f);
        for (float& g : w.q_norm) g += 1.0f;
        for (float& g : w.k_norm) g += 1.0f;
    }
    return w;
}

AttentionWeights attn_zero_like(const AttentionWeights& w) {
    AttentionWeights g = w;
    for (std::vector<float>* v :
         {&g.input_norm, &g.wq, &g.wk, &g.wv, &g.wo, &g.bq, &g.bk, &g.bv, &g.bo, &g.q_norm, &g.k_norm})
        std::fill(v->begin(), v->end(), 0.0f);
    return g;
}

void check_attention_case(const AttnCase& c) {
    SCOPED_TRACE(c.name);
    const int d = 8, n = c.n;
    const double eps = 1e-6;
    DecoderShape s;
    s.num_heads = c.num_heads, s.num_kv_heads = c.num_kv_heads, s.head_dim = c.head_dim;
    s.sliding_window = c.window, s.qk_norm = c.qk_norm, s.rope_theta = c.theta, s.qkv_bias = c.bias;
    AttentionWeights w = attn_weights(s, d, c.bias, 51);
    std::vector<float> x = random_vec(n * d, 61), r = random_vec(n * d, 62), out(n * d);
    AttentionSaved saved;
    attention_forward_train(w, s, d, eps, x, n, out, saved);
    EXPECT_LT(bwdtest::rel_l2(out, bwdtest::ref_attention(w, s, d, eps, to_double(x))), 1e-5);
    std::vector<float> dx(n * d, 0.0f);
    AttentionWeights grad = attn_zero_like(w);
    attention_backward(w, s, d, eps, x, saved, r, dx, grad);
    auto loss = [&] { return bwdtest::dot(bwdtest::ref_attention(w, s, d, eps, to_double(x)), r); };
    check_grad(c.name + " dx", x, dx, loss);
    check_grad(c.name + " dwq", w.wq, grad.wq, loss);
    check_grad(c.name + " dwk", w.wk, grad.wk, loss);
    check_grad(c.name + " dwv", w.wv, grad.wv, loss);
    check_grad(c.name + " dwo", w.wo, grad.wo, loss);
    if (c.bias) {
        check_grad(c.name + " dbq", w.bq, grad.bq, loss);
        check_grad(c.name + " dbk", w.bk, grad.bk, loss);
        check_grad(c.name + " dbv", w.bv, grad.bv, loss);
        check_grad(c.name + " dbo", w.bo, grad.bo, loss);
    }
    if (c.qk_norm != QkNorm::kNone) {
        check_grad(c.name + " dq_norm", w.q_norm, grad.q_norm, loss);
        check_grad(c.name + " dk_norm", w.k_norm, grad.k_norm, loss);
    }
}

TEST(AttentionBackward, GqaCausalMatchesFiniteDifferences) {
    check_attention_case({"gqa causal", 4, 2, 6, 0, QkNorm::kNone, false});
}

TEST(AttentionBackward, SlidingWindowWithBiasesMatchesFiniteDifferences) {
    check_attention_case({"window 3 bias", 4, 2, 6, 3, QkNorm::kNone, true});
}

TEST(AttentionBackward, WholeQkNormMatchesFiniteDifferences) {
    check_attention_case({"qk norm whole", 4, 2, 6, 0, QkNorm::kWhole, false, 7, 50});
}

TEST(AttentionBackward, PerHeadQkNormWindowAndBiasesMatchFiniteDifferences) {
    check_attention_case({"qk norm per head window", 4, 2, 4, 4, QkNorm::kPerHead, true, 9, 50});
}

TEST(AttentionBackward, OneTokenAndMultiHeadMatchFiniteDifferences) {
    check_attention_case({"one token", 4, 2, 6, 0, QkNorm::kPerHead, true, 1});
    check_attention_case({"mha", 2, 2, 4, 0, QkNorm::kWhole, false, 5});
}

TEST(AttentionBackward, LongSequenceMatchesFiniteDifferences) {
    // 70 tokens: forward and backward run two 64-row blocks; a window of 20 masks most keys of the late rows.
    check_attention_case({"long window 20", 4, 2, 6, 20, QkNorm::kPerHead, true, 70});
    check_attention_case({"long causal", 4, 2, 6, 0, QkNorm::kWhole, false, 70});
}

TEST(AttentionBackward, TrainingForwardKeepsAttentionsResults) {
    // attention_forward_train gives attention()'s output with an empty cache, bit for bit.
    DecoderShape s;
    s.num_heads = 4, s.num_kv_heads = 2, s.head_dim = 6, s.sliding_window = 5, s.qk_norm = QkNorm::kWhole;
    s.rope_theta = 10000;
    const int d = 8, n = 70;  // more than one 64-row block
    const AttentionWeights w = attn_weights(s, d, true, 71);
    const std::vector<float> x = random_vec(n * d, 72);
    std::vector<float> out(n * d), ref(n * d);
    AttentionSaved saved;
    attention_forward_train(w, s, d, 1e-6, x, n, out, saved);
    KvCache cache;
    AttentionScratch scratch;
    attention(w, s, d, 1e-6, x, n, cache, ref, scratch);
    EXPECT_EQ(out, ref);
    EXPECT_EQ(saved.k, cache.k);
    EXPECT_EQ(saved.v, cache.v);
    EXPECT_EQ(saved.q_proj.size(), static_cast<size_t>(n * s.num_heads * s.head_dim));
}

}  // namespace
}  // namespace epmoe
