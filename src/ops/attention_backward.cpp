// The backward of the linear layers, token embeddings and one whole sequence's self-attention
// (attention_backward.hpp). Attention's backward runs by blocks of 64 query rows and head by head: the block's
// probabilities P [rows, keys it reads] are recomputed from the saved q and k (one sgemm, a masked softmax), then
// dP = dcontext v^T, dS = P (dP - rowsum(P dP)), dq = dS k * scale, dk += dS^T q * scale, dv += P^T dcontext
// (sgemms), a kv head summing over the query heads that read it; then RoPE's inverse rotation, the q/k norms'
// backward and the three projections'.
#include "epmoe/ops/attention_backward.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <utility>
#include <vector>

#include "attention_internal.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/ops/norm.hpp"
#include "rope.hpp"
#include "sgemm.hpp"

namespace epmoe {
namespace {

// Query rows per block of the backward: bounds the [rows, keys] buffers at 64 n floats and skips the keys no row
// of the block reads (causal, sliding window), as attention.cpp's forward does.
constexpr int kAttnBackBlock = 64;

// The sizes of one layer's attention (as attention.cpp's AttnDims).
struct AttnBackDims {
    int n;  // tokens of the sequence
    int head_dim, q_dim, kv_dim, group, window;
    float scale;  // head_dim^-0.5
};

// One block of rows [r0, r1) of one head: the keys k_first .. r1 - 1 that any of its rows reads.
struct AttnBackBlock {
    int r0, r1, k_first;
    int rows() const { return r1 - r0; }
    int cols() const { return r1 - k_first; }
};

// The first key the query at position i reads: i - window + 1 under a sliding window, else 0.
int attnb_first_key(int i, int window) { return window > 0 ? std::max(0, i - window + 1) : 0; }

// p [rows, cols] = the masked softmax of the block's q_h k_g^T * scale: row i over keys first(i) .. i; masked
// entries 0 (attn_masked_softmax, the forward's). q_b: the block's first query row of head h; k_b: key k_first of its
// kv head.
void attnb_probs(const AttnBackDims& d, const AttnBackBlock& b, const float* q_b, const float* k_b, float* p) {
    const int cols = b.cols();
    sgemm(false, true, b.rows(), cols, d.head_dim, d.scale, q_b, d.q_dim, k_b, d.kv_dim, 0.0f, p, cols);
    for (int r = 0; r < b.rows(); ++r)
        attn_masked_softmax(p + static_cast<size_t>(r) * cols, cols, attnb_first_key(b.r0 + r, d.window) - b.k_first,
                            b.r0 + r + 1 - b.k_first);
}

// Query head h (reading kv head h / group), rows of block b: adds their part of dq [n, q_dim], dk and dv
// [n, kv_dim], from dcontext [n, q_dim]. p, dp: buffers of at least rows * cols.
void attnb_block(const AttnBackDims& d, const AttnBackBlock& b, int h, const AttentionSaved& s, const float* dcontext,
                 float* dq, float* dk, float* dv, float* p, float* dp) {
    const size_t q_off = static_cast<size_t>(b.r0) * d.q_dim + static_cast<size_t>(h) * d.head_dim;
    const size_t kv_off = static_cast<size_t>(b.k_first) * d.kv_dim + static_cast<size_t>(h / d.group) * d.head_dim;
    const float* q_b = s.q.data() + q_off;   // [rows, head_dim], stride q_dim
    const float* k_b = s.k.data() + kv_off;  // [cols, head_dim], stride kv_dim
    const float* v_b = s.v.data() + kv_off;  // [cols, head_dim], stride kv_dim
    const float* dc_b = dcontext + q_off;    // [rows, head_dim], stride q_dim
    const int m = b.rows(), cols = b.cols(), hd = d.head_dim;
    attnb_probs(d, b, q_b, k_b, p);
    // dP = dcontext v^T; then dS * scale in its place: P (dP - sum_j P dP) * scale, 0 where masked (P = 0).
    sgemm(false, true, m, cols, hd, 1.0f, dc_b, d.q_dim, v_b, d.kv_dim, 0.0f, dp, cols);
    for (size_t i = 0; i < static_cast<size_t>(m) * cols; i += cols) {
        double dot = 0;
        for (int j = 0; j < cols; ++j) dot += static_cast<double>(p[i + j]) * dp[i + j];
        const float delta = static_cast<float>(dot);
        for (int j = 0; j < cols; ++j) dp[i + j] = p[i + j] * (dp[i + j] - delta) * d.scale;
    }
    // dq += dS k; dk += dS^T q; dv += P^T dcontext.
    sgemm(false, false, m, hd, cols, 1.0f, dp, cols, k_b, d.kv_dim, 1.0f, dq + q_off, d.q_dim);
    sgemm(true, false, cols, hd, m, 1.0f, dp, cols, q_b, d.q_dim, 1.0f, dk + kv_off, d.kv_dim);
    sgemm(true, false, cols, hd, m, 1.0f, p, cols, dc_b, d.q_dim, 1.0f, dv + kv_off, d.kv_dim);
}

// The gradient of q(x) (or k(x)) from that of its normed and rotated form, in place over `grad` [n, heads *
// head_dim]: RoPE's backward is the inverse rotation, apply_rope with the frequencies negated (cos is even, sin
// odd, and float negation is exact); then the q/k norm's backward from the saved projection, adding into dnorm.
void attnb_qk_backward(QkNorm kind, std::span<const float> proj, std::span<const float> norm, double eps, int heads,
                       int head_dim, int64_t n, std::span<const float> neg_inv_freq, std::vector<float>& grad,
                       std::span<float> dnorm) {
    apply_rope(grad, n, heads, head_dim, 0, neg_inv_freq);
    if (kind == QkNorm::kNone) return;
    EPMOE_ASSERT(proj.size() == grad.size() && dnorm.size() == norm.size());
    std::vector<float> dproj(grad.size(), 0.0f);             // [n, heads * head_dim]
    rms_norm_backward(proj, norm, eps, grad, dproj, dnorm);  // rows of norm.size(): whole or per head
    grad.swap(dproj);
}

// grad has w's layout: every vector as long as w's.
bool attnb_same_layout(const AttentionWeights& w, const AttentionWeights& g) {
    return g.wq.size() == w.wq.size() && g.wk.size() == w.wk.size() && g.wv.size() == w.wv.size() &&
           g.wo.size() == w.wo.size() && g.bq.size() == w.bq.size() && g.bk.size() == w.bk.size() &&
           g.bv.size() == w.bv.size() && g.bo.size() == w.bo.size() && g.q_norm.size() == w.q_norm.size() &&
           g.k_norm.size() == w.k_norm.size();
}

}  // namespace

void linear_backward(std::span<const float> x, int64_t n, int in, std::span<const float> w, int out,
                     std::span<const float> dy, std::span<float> dx, std::span<float> dw, std::span<float> db) {
    const size_t rows = static_cast<size_t>(n), cols = static_cast<size_t>(out);
    EPMOE_ASSERT(n >= 0 && n <= INT_MAX && in > 0 && out > 0 && x.size() == rows * static_cast<size_t>(in) &&
                 w.size() == cols * static_cast<size_t>(in) && dy.size() == rows * cols &&
                 (dx.empty() || dx.size() == x.size()) && (dw.empty() || dw.size() == w.size()) &&
                 (db.empty() || db.size() == cols));
    if (n == 0) return;
    const int m = static_cast<int>(n);
    if (!dx.empty())  // dx [n, in] += dy [n, out] W [out, in]
        sgemm(false, false, m, in, out, 1.0f, dy.data(), out, w.data(), in, 1.0f, dx.data(), in);
    if (!dw.empty())  // dW [out, in] += dy^T [out, n] x [n, in]
        sgemm(true, false, out, in, m, 1.0f, dy.data(), out, x.data(), in, 1.0f, dw.data(), in);
    if (!db.empty()) {
        std::vector<double> sum(cols, 0.0);  // [out]
        for (size_t r = 0; r < rows; ++r)
            for (size_t c = 0; c < cols; ++c) sum[c] += dy[r * cols + c];
        for (size_t c = 0; c < cols; ++c) db[c] += static_cast<float>(sum[c]);
    }
}

void embed_tokens_backward(std::span<const int32_t> ids, int d_model, std::span<const float> dout,
                           std::span<float> dtable) {
    const size_t d = static_cast<size_t>(d_model);
    EPMOE_ASSERT(d_model > 0 && dtable.size() % d == 0 && dout.size() == ids.size() * d);
    const size_t vocab = dtable.size() / d;
    for (size_t t = 0; t < ids.size(); ++t) {
        EPMOE_ASSERT(ids[t] >= 0 && static_cast<size_t>(ids[t]) < vocab);
        float* row = dtable.data() + static_cast<size_t>(ids[t]) * d;
        for (size_t j = 0; j < d; ++j) row[j] += dout[t * d + j];
    }
}

void attention_forward_train(const AttentionWeights& w, const DecoderShape& shape, int d_model, double eps,
                             std::span<const float> x, int64_t n, std::span<float> out, AttentionSaved& saved) {
    KvCache cache;
    AttentionScratch scratch;
    attention(w, shape, d_model, eps, x, n, cache, out, scratch);
    // attention() leaves q (after norm and RoPE) and the context in its scratch, k and v in the cache.
    saved.n = n;
    saved.q = std::move(scratch.q);
    saved.context = std::move(scratch.context);
    saved.k = std::move(cache.k);
    saved.v = std::move(cache.v);
    saved.q_proj.clear();
    saved.k_proj.clear();
    if (shape.qk_norm == QkNorm::kNone || n == 0) return;
    // The q/k norms' backward needs their inputs, which attention() does not keep: the two projections again.
    saved.q_proj.resize(saved.q.size());
    saved.k_proj.resize(saved.k.size());
    linear(x, n, d_model, w.wq, w.bq, shape.num_heads * shape.head_dim, saved.q_proj);
    linear(x, n, d_model, w.wk, w.bk, shape.num_kv_heads * shape.head_dim, saved.k_proj);
}

void attention_backward(const AttentionWeights& w, const DecoderShape& shape, int d_model, double eps,
                        std::span<const float> x, const AttentionSaved& saved, std::span<const float> dout,
                        std::span<float> dx, AttentionWeights& grad) {
    const int hd = shape.head_dim;
    EPMOE_ASSERT(hd > 0 && hd % 2 == 0 && shape.num_kv_heads > 0 && shape.num_heads % shape.num_kv_heads == 0 &&
                 saved.n >= 0 && saved.n <= INT_MAX && attnb_same_layout(w, grad));
    const AttnBackDims d{static_cast<int>(saved.n),
                         hd,
                         shape.num_heads * hd,
                         shape.num_kv_heads * hd,
                         shape.num_heads / shape.num_kv_heads,
                         shape.sliding_window,
                         static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)))};
    const size_t rows = static_cast<size_t>(d.n), q_size = rows * d.q_dim, kv_size = rows * d.kv_dim;
    EPMOE_ASSERT(x.size() == rows * d_model && dout.size() == x.size() && dx.size() == x.size() &&
                 saved.q.size() == q_size && saved.k.size() == kv_size && saved.v.size() == kv_size &&
                 saved.context.size() == q_size);
    if (d.n == 0) return;
    // o projection: dcontext [n, q_dim].
    std::vector<float> dcontext(q_size, 0.0f);
    linear_backward(saved.context, d.n, d.q_dim, w.wo, d_model, dout, dcontext, grad.wo, grad.bo);
    // Attention, head by head: dq [n, q_dim], dk and dv [n, kv_dim] of the normed and rotated q and k.
    std::vector<float> dq(q_size, 0.0f), dk(kv_size, 0.0f), dv(kv_size, 0.0f);
    const size_t block = std::min<size_t>(rows, kAttnBackBlock);
    std::vector<float> p(block * rows), dp(block * rows);  // [block rows, keys] each
    for (int r0 = 0; r0 < d.n; r0 += kAttnBackBlock) {
        const AttnBackBlock b{r0, std::min(d.n, r0 + kAttnBackBlock), attnb_first_key(r0, d.window)};
        for (int h = 0; h < shape.num_heads; ++h)
            attnb_block(d, b, h, saved, dcontext.data(), dq.data(), dk.data(), dv.data(), p.data(), dp.data());
    }
    // RoPE and the q/k norms backward, then the three projections'.
    std::vector<float> neg_inv_freq = rope_inv_freq(shape.rope_theta, hd);  // [head_dim / 2]
    for (float& f : neg_inv_freq) f = -f;
    attnb_qk_backward(shape.qk_norm, saved.q_proj, w.q_norm, eps, shape.num_heads, hd, d.n, neg_inv_freq, dq,
                      grad.q_norm);
    attnb_qk_backward(shape.qk_norm, saved.k_proj, w.k_norm, eps, shape.num_kv_heads, hd, d.n, neg_inv_freq, dk,
                      grad.k_norm);
    linear_backward(x, d.n, d_model, w.wq, d.q_dim, dq, dx, grad.wq, grad.bq);
    linear_backward(x, d.n, d_model, w.wk, d.kv_dim, dk, dx, grad.wk, grad.bk);
    linear_backward(x, d.n, d_model, w.wv, d.kv_dim, dv, dx, grad.wv, grad.bv);
}

}  // namespace epmoe
