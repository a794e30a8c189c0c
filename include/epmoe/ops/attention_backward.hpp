// The backward of attention.hpp's ops for training: linear layers, token embeddings, and one whole sequence's
// self-attention (no KV cache: every position at once), with the forward that keeps what the backward needs.
// Pure compute, FP32 GEMMs (cblas_sgemm) with softmax and norm statistics in double where they are summed.
// Every backward ADDS into its gradient outputs, inputs' and parameters' alike (norm.hpp says why); no gradient
// output may alias an input. (linear and embed_tokens would sit beside their forwards in attention.cpp; they
// are here while that file has another owner.)
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "epmoe/base/shape.hpp"
#include "epmoe/ops/attention.hpp"

namespace epmoe {

// The backward of linear (y = x W^T + b), from its input x and dy, the gradient of y: dx += dy W,
// dw += dy^T x, db += the sum of dy's rows. x, dx: [n, in]; w, dw: [out, in]; dy: [n, out]; db: [out].
// dx, dw or db may be empty (not wanted: the first layer's input, a layer without bias).
void linear_backward(std::span<const float> x, int64_t n, int in, std::span<const float> w, int out,
                     std::span<const float> dy, std::span<float> dx, std::span<float> dw, std::span<float> db);

// The backward of embed_tokens: dtable[ids[t]] += dout[t], in token order (deterministic; repeated ids add
// up). dtable: [vocab, d_model]; dout: [ids.size(), d_model].
void embed_tokens_backward(std::span<const int32_t> ids, int d_model, std::span<const float> dout,
                           std::span<float> dtable);

// What attention_forward_train keeps of one sequence's attention for attention_backward (with the input x,
// which the caller keeps: the layer's RMSNorm output). The softmax probabilities are not kept: the backward
// recomputes each head's from q and k (as FlashAttention does), so memory stays O(n), not O(heads n^2).
struct AttentionSaved {
    int64_t n = 0;                      // tokens of the sequence, at positions 0 .. n - 1
    std::vector<float> q_proj, k_proj;  // [n, q_dim], [n, kv_dim]: q(x), k(x) before q/k norm; empty without it
    std::vector<float> q, k, v;         // [n, q_dim], [n, kv_dim] x2: q, k after q/k norm and RoPE; v = v(x)
    std::vector<float> context;         // [n, q_dim]: every head's softmax(q k^T * scale, masked) v, o's input
};

// One whole sequence's attention from position 0, exactly as attention() with an empty KvCache computes it
// (it runs attention(); so training and inference agree bit for bit), filling saved.
// x: [n, d_model], the input norm's output; out: [n, d_model] = o_proj(attention) + bo (no residual).
void attention_forward_train(const AttentionWeights& w, const DecoderShape& shape, int d_model, double eps,
                             std::span<const float> x, int64_t n, std::span<float> out, AttentionSaved& saved);

// The backward of attention_forward_train, dout the gradient of out [n, d_model]: dx [n, d_model] += dout
// d out/dx, and grad's wq, wk, wv, wo, bq, bk, bv, bo, q_norm, k_norm += their gradients. grad has w's layout
// (each vector as long as w's, empty where w's is); grad.input_norm is not touched (the caller's RMSNorm:
// rms_norm_backward). Causal and sliding-window masks, GQA (a kv head's gradient sums over its query heads),
// RoPE's backward (the inverse rotation), q/k norm whole or per head.
void attention_backward(const AttentionWeights& w, const DecoderShape& shape, int d_model, double eps,
                        std::span<const float> x, const AttentionSaved& saved, std::span<const float> dout,
                        std::span<float> dx, AttentionWeights& grad);

}  // namespace epmoe
