// What the backward tests (test_backward_*.cpp) share: central finite differences of a double-precision loss,
// the relative L2 error, seeded inputs, and plain-loop double-precision forwards of the ops (none of epmoe's
// ops) for the losses to differentiate. The analytic gradients are FP32; each is compared with central
// differences of a double reference at the same FP32 parameters: a parameter moves by +-h rounded to float, and
// the difference quotient divides by the step actually taken, so only truncation (O(h^2)) is left.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "epmoe/base/shape.hpp"
#include "epmoe/ops/attention.hpp"
#include "ops/rope.hpp"

namespace epmoe::bwdtest {

using Vec = std::vector<double>;

// n values uniform in [-scale, scale), from seed.
inline std::vector<float> random_vec(size_t n, uint64_t seed, float scale = 1.0f) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-scale, scale);
    std::vector<float> v(n);
    for (float& x : v) x = u(rng);
    return v;
}

inline Vec to_double(std::span<const float> v) { return Vec(v.begin(), v.end()); }

// ||a - b|| / ||b||; the absolute ||a - b|| when ||b|| < 1e-12 (a gradient that should be 0).
inline double rel_l2(std::span<const float> a, const Vec& b) {
    EXPECT_EQ(a.size(), b.size());
    double diff = 0, norm = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
        diff += (a[i] - b[i]) * (a[i] - b[i]);
        norm += b[i] * b[i];
    }
    return norm < 1e-24 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

// d loss / d param[i] for every i by central differences, loss evaluated with param[i] at float(v +- h).
inline Vec fd_gradient(std::vector<float>& param, const std::function<double()>& loss, double h = 1e-3) {
    Vec grad(param.size());
    for (size_t i = 0; i < param.size(); ++i) {
        const float orig = param[i];
        const float up = param[i] = static_cast<float>(orig + h);
        const double l_up = loss();
        const float down = param[i] = static_cast<float>(orig - h);
        const double l_down = loss();
        param[i] = orig;
        grad[i] = (l_up - l_down) / (static_cast<double>(up) - static_cast<double>(down));
    }
    return grad;
}

// The worst relative L2 error seen by this test binary (printed by check_grad under EPMOE_FD_VERBOSE=1).
inline double& worst_error() {
    static double worst = 0;
    return worst;
}

// Expects analytic (the FP32 backward's gradient of param) within tol relative L2 of the finite differences
// with step h.
inline double check_grad(const std::string& name, std::vector<float>& param, std::span<const float> analytic,
                         const std::function<double()>& loss, double tol = 1e-4, double h = 1e-3) {
    const double err = rel_l2(analytic, fd_gradient(param, loss, h));
    EXPECT_LT(err, tol) << name;
    worst_error() = std::max(worst_error(), err);
    if (std::getenv("EPMOE_FD_VERBOSE"))
        std::printf("  fd %-28s %.3e (worst %.3e)\n", name.c_str(), err, worst_error());
    return err;
}

// sum(y * r): a scalar whose gradient with respect to y is r.
inline double dot(const Vec& y, std::span<const float> r) {
    EXPECT_EQ(y.size(), r.size());
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += y[i] * r[i];
    return s;
}

// ---- Double-precision forwards.

// x [n, g.size()] / rms * g, row by row.
inline Vec ref_rms_norm(const Vec& x, std::span<const float> g, double eps) {
    const size_t d = g.size();
    Vec out(x.size());
    for (size_t row = 0; row < x.size(); row += d) {
        double ss = 0;
        for (size_t j = 0; j < d; ++j) ss += x[row + j] * x[row + j];
        const double r = 1.0 / std::sqrt(ss / static_cast<double>(d) + eps);
        for (size_t j = 0; j < d; ++j) out[row + j] = x[row + j] * r * g[j];
    }
    return out;
}

// x [n, in] W^T [in, out] + b.
inline Vec ref_linear(const Vec& x, int in, std::span<const float> w, std::span<const float> b, int out) {
    const size_t n = x.size() / static_cast<size_t>(in);
    Vec y(n * out);
    for (size_t t = 0; t < n; ++t)
        for (int o = 0; o < out; ++o) {
            double s = b.empty() ? 0.0 : b[o];
            for (int i = 0; i < in; ++i) s += x[t * in + i] * static_cast<double>(w[static_cast<size_t>(o) * in + i]);
            y[t * out + o] = s;
        }
    return y;
}

// W2 (silu(W1 x) * W3 x) for every row: w13 [2 d_ff, d_model], w2 [d_model, d_ff].
inline Vec ref_swiglu(const Vec& x, int d_model, int d_ff, std::span<const float> w13, std::span<const float> w2) {
    const Vec h = ref_linear(x, d_model, w13, {}, 2 * d_ff);
    const size_t n = x.size() / static_cast<size_t>(d_model), f = static_cast<size_t>(d_ff);
    Vec act(n * f);
    for (size_t t = 0; t < n; ++t)
        for (size_t j = 0; j < f; ++j) {
            const double a = h[t * 2 * f + j], b = h[t * 2 * f + f + j];
            act[t * f + j] = a / (1.0 + std::exp(-a)) * b;
        }
    return ref_linear(act, d_ff, w2, {}, d_model);
}

// route()'s weights for the given experts: softmax or sigmoid scores, renormalised over the selected ones when
// norm_topk. logits [n, E]; ids [n, k].
inline Vec ref_route_weights(const Vec& logits, int num_experts, std::span<const int32_t> ids, int top_k, GateKind gate,
                             bool norm_topk) {
    const size_t n = logits.size() / static_cast<size_t>(num_experts);
    Vec w(n * top_k), score(num_experts);
    for (size_t t = 0; t < n; ++t) {
        const double* z = &logits[t * num_experts];
        double max = z[0], sum = 0, sel = 0;
        for (int e = 0; e < num_experts; ++e) max = std::max(max, z[e]);
        for (int e = 0; e < num_experts; ++e) sum += score[e] = std::exp(z[e] - max);
        for (int e = 0; e < num_experts; ++e)
            score[e] = gate == GateKind::kSoftmax ? score[e] / sum : 1.0 / (1.0 + std::exp(-z[e]));
        for (int i = 0; i < top_k; ++i) sel += score[ids[t * top_k + i]];
        for (int i = 0; i < top_k; ++i) w[t * top_k + i] = score[ids[t * top_k + i]] / (norm_topk ? sel : 1.0);
    }
    return w;
}

// Sum over targets != -100 of -log softmax(logits[t])[target], divided by their count.
inline double ref_cross_entropy(const Vec& logits, int vocab, std::span<const int32_t> targets) {
    double sum = 0;
    int count = 0;
    for (size_t t = 0; t < targets.size(); ++t) {
        if (targets[t] == -100) continue;
        const double* row = &logits[t * vocab];
        double max = row[0], s = 0;
        for (int j = 0; j < vocab; ++j) max = std::max(max, row[j]);
        for (int j = 0; j < vocab; ++j) s += std::exp(row[j] - max);
        sum += max + std::log(s) - row[targets[t]];
        ++count;
    }
    return sum / count;
}

// HF's rotate-half RoPE on x [n, heads * head_dim] at positions 0 .. n-1, angles as apply_rope takes them.
inline void ref_rope(Vec& x, int heads, int head_dim, double theta) {
    const std::vector<float> inv_freq = rope_inv_freq(theta, head_dim);
    const int half = head_dim / 2;
    const size_t row = static_cast<size_t>(heads) * head_dim, n = x.size() / row;
    for (size_t t = 0; t < n; ++t)
        for (int h = 0; h < heads; ++h)
            for (int j = 0; j < half; ++j) {
                const double angle = static_cast<double>(static_cast<float>(t) * inv_freq[j]);
                double* lo = &x[t * row + static_cast<size_t>(h) * head_dim];
                const double a = lo[j], b = lo[j + half], c = std::cos(angle), s = std::sin(angle);
                lo[j] = a * c - b * s;
                lo[j + half] = b * c + a * s;
            }
}

// One sequence's attention as HF's eager attention, x [n, d_model] the normed input: projections, q/k norm
// (whole or per head: the weight's length is the row), RoPE, causal and sliding-window softmax, GQA, o.
inline Vec ref_attention(const AttentionWeights& w, const DecoderShape& s, int d_model, double eps, const Vec& x) {
    const int hd = s.head_dim, q_dim = s.num_heads * hd, kv_dim = s.num_kv_heads * hd;
    const int n = static_cast<int>(x.size()) / d_model, group = s.num_heads / s.num_kv_heads;
    Vec q = ref_linear(x, d_model, w.wq, w.bq, q_dim), k = ref_linear(x, d_model, w.wk, w.bk, kv_dim);
    const Vec v = ref_linear(x, d_model, w.wv, w.bv, kv_dim);
    if (s.qk_norm != QkNorm::kNone) {
        q = ref_rms_norm(q, w.q_norm, eps);
        k = ref_rms_norm(k, w.k_norm, eps);
    }
    ref_rope(q, s.num_heads, hd, s.rope_theta);
    ref_rope(k, s.num_kv_heads, hd, s.rope_theta);
    Vec context(static_cast<size_t>(n) * q_dim, 0.0), p(n);
    for (int h = 0; h < s.num_heads; ++h)
        for (int i = 0; i < n; ++i) {
            const int g = h / group, first = s.sliding_window > 0 ? std::max(0, i - s.sliding_window + 1) : 0;
            double max = -1e300, sum = 0;
            for (int j = first; j <= i; ++j) {
                double dot = 0;
                for (int c = 0; c < hd; ++c) dot += q[i * q_dim + h * hd + c] * k[j * kv_dim + g * hd + c];
                max = std::max(max, p[j] = dot / std::sqrt(static_cast<double>(hd)));
            }
            for (int j = first; j <= i; ++j) sum += p[j] = std::exp(p[j] - max);
            for (int j = first; j <= i; ++j)
                for (int c = 0; c < hd; ++c) context[i * q_dim + h * hd + c] += p[j] / sum * v[j * kv_dim + g * hd + c];
        }
    return ref_linear(context, q_dim, w.wo, w.bo, d_model);
}

}  // namespace epmoe::bwdtest
