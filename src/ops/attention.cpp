// Linear layers, token embeddings and one sequence's self-attention with a KV cache, as Hugging Face's
// Mixtral/OLMoE/Qwen2-MoE/Qwen3-MoE eager attention computes them (include/epmoe/ops/attention.hpp).
// Projections are sgemm (sgemm.hpp: oneDNN; OpenBLAS sgemv for one row). Attention runs over blocks of query rows and,
// for each kv head, the query heads that read it stacked into one matrix: scores are one sgemm against the keys the
// block may read, then a masked softmax in the vector units, then one sgemm with the values. RoPE is in rope.cpp, the
// logits' ops in logits.cpp.
#include "epmoe/ops/attention.hpp"

#include <cblas.h>

#include <algorithm>
#include <bit>
#include <climits>
#include <cmath>
#include <cstring>

#include "attention_internal.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/ops/norm.hpp"
#include "fast_exp.hpp"
#include "rope.hpp"
#include "sgemm.hpp"

namespace epmoe {
namespace {

// Query rows per block: bounds the scores buffer and the work spent on masked (causal or out-of-window) keys,
// which a block computes and then zeroes. 64 and 128 measured best, 32 8% slower (2048 tokens, 16 heads).
constexpr int64_t kAttnQueryBlock = 64;

// The sizes of one layer's attention. q_dim = num_heads * head_dim, kv_dim = num_kv_heads * head_dim.
struct AttnDims {
    int head_dim, q_dim, kv_dim;
    int group;    // query heads per kv head
    int window;   // sliding window, 0 = none
    float scale;  // head_dim^-0.5
};

// The first key position the query at `position` reads: 0, or position - window + 1 under a sliding window.
int64_t attn_first_key(int64_t position, int window) {
    return window > 0 ? std::max<int64_t>(0, position - window + 1) : 0;
}

// RMSNorm of q or k in place, x [n, heads * head_dim]: over each whole row (kWhole, weight [heads * head_dim])
// or over each head's head_dim values (kPerHead, weight [head_dim]), as OLMoE's and Qwen3-MoE's q_norm/k_norm.
void attn_qk_norm(QkNorm kind, std::span<const float> weight, double eps, int heads, int head_dim, std::span<float> x) {
    if (kind == QkNorm::kNone) return;
    EPMOE_ASSERT(weight.size() == static_cast<size_t>(kind == QkNorm::kWhole ? heads * head_dim : head_dim));
    // rms_norm reads each row whole before writing it, so in place is safe; its row length is weight.size().
    rms_norm(x, weight, eps, x);
}

// e^x for x <= 0, clamped below at -87 (e^-87 ~ 1.6e-38 stands for 0; a softmax's x - max never needs the upper
// clamp). With std::exp, a scalar libm call, a prefill of 2048 tokens (d_model 1024, 16 heads) took 337 ms
// instead of 228.
inline float attn_exp(float x) { return fast::exp_clamped(x < -87.0f ? -87.0f : x); }

// out [rows, cols] = alpha a [rows, inner] b^T (b_t) or a b (!b_t), leading dimensions given; a sgemv when
// rows == 1 (decode, where OpenBLAS's sgemm is ~3x slower).
void attn_gemm(bool b_t, int rows, int cols, int inner, float alpha, const float* a, int lda, const float* b, int ldb,
               float beta, float* out, int ldo) {
    if (rows == 1) {
        cblas_sgemv(CblasRowMajor, b_t ? CblasNoTrans : CblasTrans, b_t ? cols : inner, b_t ? inner : cols, alpha, b,
                    ldb, a, 1, beta, out, 1);
    } else {
        sgemm(false, b_t, rows, cols, inner, alpha, a, lda, b, ldb, beta, out, ldo);
    }
}

// Kv head g and the query heads that read it, over the call's rows [r0, r1), row r at position base + r:
// context = softmax(q k^T * scale, masked) v over the keys the block may read. Stacked row r * group + i is
// query head g * group + i of row r0 + r; a row's group of heads is contiguous in q and context, so stacking
// is one copy per row. s.q, s.context [n, q_dim]; keys, values [length, kv_dim].
void attn_group_block(const AttnDims& d, int g, int64_t r0, int64_t r1, int64_t base, const float* keys,
                      const float* values, AttentionScratch& s) {
    const int64_t m = r1 - r0, rows = m * d.group;
    const int64_t k_first = attn_first_key(base + r0, d.window);  // first key any row of the block reads
    const int cols = static_cast<int>(base + r1 - k_first);       // keys k_first .. base + r1 - 1
    const int hd = d.head_dim;
    const size_t span = static_cast<size_t>(d.group) * static_cast<size_t>(hd);  // one row's group of heads
    s.group_q.resize(static_cast<size_t>(m) * span);
    s.group_out.resize(static_cast<size_t>(m) * span);
    s.scores.resize(static_cast<size_t>(rows) * static_cast<size_t>(cols));
    for (int64_t r = 0; r < m; ++r)
        std::memcpy(s.group_q.data() + r * span, s.q.data() + (r0 + r) * d.q_dim + g * span, span * sizeof(float));
    const float* k_g = keys + k_first * d.kv_dim + g * hd;    // [cols, head_dim], stride kv_dim
    const float* v_g = values + k_first * d.kv_dim + g * hd;  // [cols, head_dim], stride kv_dim
    // One GEMM for all stacked rows; for one row (decode) a GEMV per head, which reads the keys and values where
    // they lie (OpenBLAS's sgemm would first pack all of them, for two or four rows).
    const int64_t calls = m == 1 ? d.group : 1, call_rows = rows / calls;
    for (int64_t c = 0; c < calls; ++c)
        attn_gemm(true, static_cast<int>(call_rows), cols, hd, d.scale, s.group_q.data() + c * call_rows * hd, hd, k_g,
                  d.kv_dim, 0.0f, s.scores.data() + c * call_rows * cols, cols);
    for (int64_t i = 0; i < rows; ++i) {
        const int64_t position = base + r0 + i / d.group;
        attn_masked_softmax(s.scores.data() + i * cols, cols, attn_first_key(position, d.window) - k_first,
                            position + 1 - k_first);
    }
    for (int64_t c = 0; c < calls; ++c)
        attn_gemm(false, static_cast<int>(call_rows), hd, cols, 1.0f, s.scores.data() + c * call_rows * cols, cols, v_g,
                  d.kv_dim, 0.0f, s.group_out.data() + c * call_rows * hd, hd);
    for (int64_t r = 0; r < m; ++r)
        std::memcpy(s.context.data() + (r0 + r) * d.q_dim + g * span, s.group_out.data() + r * span,
                    span * sizeof(float));
}

AttnDims attn_dims(const DecoderShape& shape) {
    const int hd = shape.head_dim;
    EPMOE_ASSERT(hd > 0 && hd % 2 == 0 && shape.num_kv_heads > 0 && shape.num_heads % shape.num_kv_heads == 0);
    return {hd,
            shape.num_heads * hd,
            shape.num_kv_heads * hd,
            shape.num_heads / shape.num_kv_heads,
            shape.sliding_window,
            static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)))};
}

// After the projections: scratch.q [n, q_dim] and the cache's last n keys and values (appended, cache.length
// not yet advanced) get their q/k norm and RoPE (inv_freq: rope_inv_freq's) at positions cache.length ..;
// then the context [n, q_dim] of every head goes into scratch.context; cache.length += n.
void attn_core(const AttentionWeights& w, const DecoderShape& shape, double eps, const AttnDims& d,
               const std::vector<float>& inv_freq, int64_t n, KvCache& cache, AttentionScratch& scratch) {
    const int hd = shape.head_dim;
    const size_t kv_dim = static_cast<size_t>(d.kv_dim), first = static_cast<size_t>(cache.length);
    const std::span<float> k_new = std::span<float>(cache.k).subspan(first * kv_dim);
    attn_qk_norm(shape.qk_norm, w.q_norm, eps, shape.num_heads, hd, scratch.q);
    attn_qk_norm(shape.qk_norm, w.k_norm, eps, shape.num_kv_heads, hd, k_new);
    apply_rope(scratch.q, n, shape.num_heads, hd, cache.length, inv_freq);
    apply_rope(k_new, n, shape.num_kv_heads, hd, cache.length, inv_freq);
    // Attention by blocks of query rows and kv heads: context [n, q_dim], heads concatenated.
    scratch.context.resize(static_cast<size_t>(n) * static_cast<size_t>(d.q_dim));
    for (int64_t r0 = 0; r0 < n; r0 += kAttnQueryBlock) {
        const int64_t r1 = std::min(n, r0 + kAttnQueryBlock);
        for (int g = 0; g < shape.num_kv_heads; ++g)
            attn_group_block(d, g, r0, r1, cache.length, cache.k.data(), cache.v.data(), scratch);
    }
    cache.length += n;
}

// q [n, q_dim], k and v [n, kv_dim] = x W^T + b: the packed stacked projection (then split, the biases added)
// where the layer has one, else three linear() calls. qkv: scratch for the stacked rows.
void project_qkv(const AttentionWeights& w, const AttnDims& d, int d_model, std::span<const float> x, int64_t n,
                 std::span<float> q, std::span<float> k, std::span<float> v, std::vector<float>& qkv) {
    if (!w.packed) {
        linear(x, n, d_model, w.wq, w.bq, d.q_dim, q);
        linear(x, n, d_model, w.wk, w.bk, d.kv_dim, k);
        linear(x, n, d_model, w.wv, w.bv, d.kv_dim, v);
        return;
    }
    const size_t qd = static_cast<size_t>(d.q_dim), kvd = static_cast<size_t>(d.kv_dim), row = qd + 2 * kvd;
    qkv.resize(static_cast<size_t>(n) * row);
    w.packed->qkv.run(x, n, qkv);
    auto split = [&](size_t at, size_t width, std::span<float> to, const std::vector<float>& bias) {
        for (size_t r = 0; r < static_cast<size_t>(n); ++r) {
            const float* src = qkv.data() + r * row + at;
            float* dst = to.data() + r * width;
            if (bias.empty())
                std::memcpy(dst, src, width * sizeof(float));
            else
                for (size_t j = 0; j < width; ++j) dst[j] = src[j] + bias[j];
        }
    };
    split(0, qd, q, w.bq);
    split(qd, kvd, k, w.bk);
    split(qd + kvd, kvd, v, w.bv);
}

// out [n, d_model] = context W_o^T + b_o, packed where the layer is.
void project_o(const AttentionWeights& w, const AttnDims& d, int d_model, std::span<const float> context, int64_t n,
               std::span<float> out) {
    if (!w.packed) {
        linear(context, n, d.q_dim, w.wo, w.bo, d_model, out);
        return;
    }
    w.packed->o.run(context, n, out);
    if (!w.bo.empty())
        for (size_t i = 0; i < out.size(); ++i) out[i] += w.bo[i % w.bo.size()];
}

}  // namespace

// Softmax of row[first, end) in place, FP32 as HF's eager attention (max subtracted; sums of 16 lanes added in
// double); the rest of row [cols] becomes 0, as HF's mask (the dtype's minimum added) gives after exp.
__attribute__((target_clones("avx512f", "avx2", "default"))) void attn_masked_softmax(float* row, int64_t cols,
                                                                                      int64_t first, int64_t end) {
    constexpr int kLanes = 16;  // fixed lanes: the same sums whatever vector width the clone runs
    float* __restrict x = row + first;
    const int64_t len = end - first, body = len / kLanes * kLanes;
    float lane[kLanes];
    std::fill(lane, lane + kLanes, x[0]);
    for (int64_t j = 0; j < body; j += kLanes)
        for (int l = 0; l < kLanes; ++l) lane[l] = x[j + l] > lane[l] ? x[j + l] : lane[l];
    float max = x[0];
    for (int64_t j = body; j < len; ++j) max = x[j] > max ? x[j] : max;
    for (int l = 0; l < kLanes; ++l) max = lane[l] > max ? lane[l] : max;
    std::fill(lane, lane + kLanes, 0.0f);
    for (int64_t j = 0; j < body; j += kLanes)
        for (int l = 0; l < kLanes; ++l) lane[l] += x[j + l] = attn_exp(x[j + l] - max);
    double sum = 0;
    for (int64_t j = body; j < len; ++j) sum += x[j] = attn_exp(x[j] - max);
    for (int l = 0; l < kLanes; ++l) sum += lane[l];
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < len; ++j) x[j] *= inv;
    std::fill(row, row + first, 0.0f);
    std::fill(row + end, row + cols, 0.0f);
}

void linear(std::span<const float> x, int64_t n, int in, std::span<const float> w, std::span<const float> b, int out,
            std::span<float> y) {
    const size_t rows = static_cast<size_t>(n), cols = static_cast<size_t>(out);
    EPMOE_ASSERT(n >= 0 && n <= INT_MAX && in > 0 && out > 0 && x.size() == rows * static_cast<size_t>(in) &&
                 w.size() == cols * static_cast<size_t>(in) && (b.empty() || b.size() == cols) &&
                 y.size() == rows * cols);
    if (n == 0) return;
    // y starts as the bias in every row (or 0), then the GEMM adds x W^T to it (beta = 1), as torch's addmm.
    if (b.empty()) {
        std::fill(y.begin(), y.end(), 0.0f);
    } else {
        for (size_t r = 0; r < rows; ++r) std::memcpy(y.data() + r * cols, b.data(), cols * sizeof(float));
    }
    attn_gemm(true, static_cast<int>(n), out, in, 1.0f, x.data(), in, w.data(), in, 1.0f, y.data(), out);
}

void embed_tokens(std::span<const float> table, int d_model, std::span<const int32_t> ids, std::span<float> out) {
    const size_t d = static_cast<size_t>(d_model);
    EPMOE_ASSERT(d_model > 0 && table.size() % d == 0 && out.size() == ids.size() * d);
    const size_t vocab = table.size() / d;
    for (size_t t = 0; t < ids.size(); ++t) {
        EPMOE_ASSERT(ids[t] >= 0 && static_cast<size_t>(ids[t]) < vocab);
        std::memcpy(out.data() + t * d, table.data() + static_cast<size_t>(ids[t]) * d, d * sizeof(float));
    }
}

void attention(const AttentionWeights& w, const DecoderShape& shape, int d_model, double eps, std::span<const float> x,
               int64_t n, KvCache& cache, std::span<float> out, AttentionScratch& scratch) {
    const AttnDims d = attn_dims(shape);
    const size_t kv_dim = static_cast<size_t>(d.kv_dim), first = static_cast<size_t>(cache.length);
    EPMOE_ASSERT(n >= 0 && cache.k.size() == first * kv_dim && cache.v.size() == first * kv_dim &&
                 x.size() == static_cast<size_t>(n) * static_cast<size_t>(d_model) && out.size() == x.size());
    if (n == 0) return;
    const size_t rows = static_cast<size_t>(n);
    // Projections: q [n, q_dim] into scratch; the new keys and values [n, kv_dim] straight into the cache.
    scratch.q.resize(rows * static_cast<size_t>(d.q_dim));
    cache.k.resize((first + rows) * kv_dim);
    cache.v.resize((first + rows) * kv_dim);
    const std::span<float> k_new = std::span<float>(cache.k).subspan(first * kv_dim);
    const std::span<float> v_new = std::span<float>(cache.v).subspan(first * kv_dim);
    project_qkv(w, d, d_model, x, n, scratch.q, k_new, v_new, scratch.qkv);
    attn_core(w, shape, eps, d, rope_inv_freq(shape.rope_theta, shape.head_dim), n, cache, scratch);
    project_o(w, d, d_model, scratch.context, n, out);
}

void attention_sequences(const AttentionWeights& w, const DecoderShape& shape, int d_model, double eps,
                         std::span<const float> x, std::span<const int64_t> lengths, std::span<KvCache* const> caches,
                         std::span<float> out, AttentionScratch& scratch) {
    const AttnDims d = attn_dims(shape);
    const size_t n = x.size() / static_cast<size_t>(d_model), q_dim = static_cast<size_t>(d.q_dim),
                 kv_dim = static_cast<size_t>(d.kv_dim);
    EPMOE_ASSERT(lengths.size() == caches.size() && out.size() == x.size());
    if (n == 0) return;
    std::vector<float>& q = scratch.all_q;
    std::vector<float>& kv = scratch.all_kv;
    std::vector<float>& context = scratch.all_context;
    q.resize(n * q_dim), kv.resize(2 * n * kv_dim), context.resize(n * q_dim);
    const std::span<float> k_all = std::span<float>(kv).first(n * kv_dim),
                           v_all = std::span<float>(kv).last(n * kv_dim);
    project_qkv(w, d, d_model, x, static_cast<int64_t>(n), q, k_all, v_all, scratch.qkv);  // all rows at once
    const std::vector<float> inv_freq = rope_inv_freq(shape.rope_theta, shape.head_dim);   // once, not per sequence
    size_t row = 0;
    for (size_t s = 0; s < caches.size(); ++s) {
        const size_t len = static_cast<size_t>(lengths[s]);
        if (len == 0) continue;
        KvCache& cache = *caches[s];
        const size_t first = static_cast<size_t>(cache.length);
        scratch.q.assign(q.begin() + static_cast<std::ptrdiff_t>(row * q_dim),
                         q.begin() + static_cast<std::ptrdiff_t>((row + len) * q_dim));
        cache.k.insert(cache.k.end(), k_all.begin() + static_cast<std::ptrdiff_t>(row * kv_dim),
                       k_all.begin() + static_cast<std::ptrdiff_t>((row + len) * kv_dim));
        cache.v.insert(cache.v.end(), v_all.begin() + static_cast<std::ptrdiff_t>(row * kv_dim),
                       v_all.begin() + static_cast<std::ptrdiff_t>((row + len) * kv_dim));
        EPMOE_ASSERT(cache.k.size() == (first + len) * kv_dim);
        attn_core(w, shape, eps, d, inv_freq, static_cast<int64_t>(len), cache, scratch);
        std::copy(scratch.context.begin(), scratch.context.end(),
                  context.begin() + static_cast<std::ptrdiff_t>(row * q_dim));
        row += len;
    }
    project_o(w, d, d_model, context, static_cast<int64_t>(n), out);
}

void pack_projections(AttentionWeights& w, int d_model, const DecoderShape& shape) {
    const AttnDims d = attn_dims(shape);
    auto p = std::make_shared<PackedProjections>();
    p->o = PackedLinear(w.wo, d_model, d.q_dim);
    if (!p->o.packed()) return;  // not on this CPU: linear() on the weights as loaded
    std::vector<float> stacked;  // [q_dim + 2 kv_dim, d_model]: W_q, W_k, W_v one under the other
    stacked.reserve(w.wq.size() + w.wk.size() + w.wv.size());
    for (const std::vector<float>* m : {&w.wq, &w.wk, &w.wv}) stacked.insert(stacked.end(), m->begin(), m->end());
    p->qkv = PackedLinear(stacked, d.q_dim + 2 * d.kv_dim, d_model);
    for (std::vector<float>* m : {&w.wq, &w.wk, &w.wv, &w.wo}) std::vector<float>().swap(*m);
    w.packed = std::move(p);
}

}  // namespace epmoe
