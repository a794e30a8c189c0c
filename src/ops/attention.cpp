// Linear layers, token embeddings and one sequence's self-attention with a KV cache, as Hugging Face's
// Mixtral/OLMoE/Qwen2-MoE/Qwen3-MoE eager attention computes them (include/epmoe/ops/attention.hpp).
// Projections are cblas_sgemm; attention runs per query head over blocks of query rows, each block's scores a
// sgemm against the keys it may read (a sgemv for a single row, the decode case), then a masked softmax and a
// second sgemm with the values. RoPE is in rope.cpp; the logits' ops are in logits.cpp.
#include "epmoe/ops/attention.hpp"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>

#include "epmoe/base/error.hpp"
#include "epmoe/ops/norm.hpp"
#include "rope.hpp"

namespace epmoe {
namespace {

// Query rows per score block: bounds the scores buffer and the work spent on masked (causal or out-of-window)
// keys, which a block computes and then zeroes.
constexpr int64_t kAttnQueryBlock = 64;

// The sizes one head block needs. q_dim = num_heads * head_dim, kv_dim = num_kv_heads * head_dim.
struct AttnDims {
    int head_dim, q_dim, kv_dim;
    int group;     // query heads per kv head
    int window;    // sliding window, 0 = none
    float scale;   // head_dim^-0.5
};

// The first key position the query at `position` reads: 0, or position - window + 1 under a sliding window.
int64_t attn_first_key(int64_t position, int window) {
    return window > 0 ? std::max<int64_t>(0, position - window + 1) : 0;
}

// RMSNorm of q or k in place, x [n, heads * head_dim]: over each whole row (kWhole, weight [heads * head_dim])
// or over each head's head_dim values (kPerHead, weight [head_dim]), as OLMoE's and Qwen3-MoE's q_norm/k_norm.
void attn_qk_norm(QkNorm kind, std::span<const float> weight, double eps, int heads, int head_dim,
                  std::span<float> x) {
    if (kind == QkNorm::kNone) return;
    EPMOE_ASSERT(weight.size() == static_cast<size_t>(kind == QkNorm::kWhole ? heads * head_dim : head_dim));
    // rms_norm reads each row whole before writing it, so in place is safe; its row length is weight.size().
    rms_norm(x, weight, eps, x);
}

// softmax over row[first, end) in FP32 exp with a double sum; the rest of row [cols] becomes 0 (HF's mask
// adds the dtype's minimum, whose exp is 0).
void attn_masked_softmax(float* row, int64_t cols, int64_t first, int64_t end) {
    float max = row[first];
    for (int64_t j = first + 1; j < end; ++j) max = std::max(max, row[j]);
    double sum = 0;
    for (int64_t j = first; j < end; ++j) {
        row[j] = std::exp(row[j] - max);
        sum += row[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = first; j < end; ++j) row[j] *= inv;
    std::fill(row, row + first, 0.0f);
    std::fill(row + end, row + cols, 0.0f);
}

// Query head h over the call's rows [r0, r1), the row r at position base + r: context[r, h] = softmax(q k^T *
// scale, masked) v over the keys the block may read. q, context [n, q_dim]; keys, values [length, kv_dim].
void attn_head_block(const AttnDims& d, int h, int64_t r0, int64_t r1, int64_t base, const float* q,
                     const float* keys, const float* values, float* context, std::vector<float>& scores) {
    const int64_t m = r1 - r0;
    const int64_t k_first = attn_first_key(base + r0, d.window);  // first key any row of the block reads
    const int cols = static_cast<int>(base + r1 - k_first);        // keys k_first .. base + r1 - 1
    const int g = h / d.group;
    const float* q_h = q + r0 * d.q_dim + h * d.head_dim;                  // [m, head_dim], stride q_dim
    const float* k_g = keys + k_first * d.kv_dim + g * d.head_dim;         // [cols, head_dim], stride kv_dim
    const float* v_g = values + k_first * d.kv_dim + g * d.head_dim;       // [cols, head_dim], stride kv_dim
    float* c_h = context + r0 * d.q_dim + h * d.head_dim;                  // [m, head_dim], stride q_dim
    scores.resize(static_cast<size_t>(m) * static_cast<size_t>(cols));   // [m, cols]
    const int hd = d.head_dim;
    if (m == 1) {  // decode: two matrix-vector products
        cblas_sgemv(CblasRowMajor, CblasNoTrans, cols, hd, d.scale, k_g, d.kv_dim, q_h, 1, 0.0f, scores.data(), 1);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), cols, hd, d.scale, q_h, d.q_dim,
                    k_g, d.kv_dim, 0.0f, scores.data(), cols);
    }
    for (int64_t r = 0; r < m; ++r) {
        const int64_t position = base + r0 + r;
        attn_masked_softmax(scores.data() + r * cols, cols, attn_first_key(position, d.window) - k_first,
                            position + 1 - k_first);
    }
    if (m == 1) {
        cblas_sgemv(CblasRowMajor, CblasTrans, cols, hd, 1.0f, v_g, d.kv_dim, scores.data(), 1, 0.0f, c_h, 1);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m), hd, cols, 1.0f, scores.data(),
                    cols, v_g, d.kv_dim, 0.0f, c_h, d.q_dim);
    }
}

}  // namespace

void linear(std::span<const float> x, int64_t n, int in, std::span<const float> w, std::span<const float> b,
            int out, std::span<float> y) {
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
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), out, in, 1.0f, x.data(), in, w.data(),
                in, 1.0f, y.data(), out);
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

void attention(const AttentionWeights& w, const DecoderShape& shape, int d_model, double eps,
               std::span<const float> x, int64_t n, KvCache& cache, std::span<float> out, AttentionScratch& scratch) {
    const int hd = shape.head_dim;
    EPMOE_ASSERT(hd > 0 && hd % 2 == 0 && shape.num_kv_heads > 0 && shape.num_heads % shape.num_kv_heads == 0);
    const AttnDims d{hd,
                     shape.num_heads * hd,
                     shape.num_kv_heads * hd,
                     shape.num_heads / shape.num_kv_heads,
                     shape.sliding_window,
                     static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)))};
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
    linear(x, n, d_model, w.wq, w.bq, d.q_dim, scratch.q);
    linear(x, n, d_model, w.wk, w.bk, d.kv_dim, k_new);
    linear(x, n, d_model, w.wv, w.bv, d.kv_dim, v_new);
    // q/k norm, then RoPE at positions cache.length .. cache.length + n - 1.
    attn_qk_norm(shape.qk_norm, w.q_norm, eps, shape.num_heads, hd, scratch.q);
    attn_qk_norm(shape.qk_norm, w.k_norm, eps, shape.num_kv_heads, hd, k_new);
    const std::vector<float> inv_freq = rope_inv_freq(shape.rope_theta, hd);  // [head_dim / 2]
    apply_rope(scratch.q, n, shape.num_heads, hd, cache.length, inv_freq);
    apply_rope(k_new, n, shape.num_kv_heads, hd, cache.length, inv_freq);
    // Attention, head by head over blocks of query rows: context [n, q_dim], heads concatenated.
    scratch.context.resize(rows * static_cast<size_t>(d.q_dim));
    for (int64_t r0 = 0; r0 < n; r0 += kAttnQueryBlock) {
        const int64_t r1 = std::min(n, r0 + kAttnQueryBlock);
        for (int h = 0; h < shape.num_heads; ++h) {
            attn_head_block(d, h, r0, r1, cache.length, scratch.q.data(), cache.k.data(), cache.v.data(),
                            scratch.context.data(), scratch.scores);
        }
    }
    cache.length += n;
    linear(scratch.context, n, d.q_dim, w.wo, w.bo, d_model, out);
}

}  // namespace epmoe
