// The whole-decoder ops beside the MoE block, as Hugging Face's Mixtral, OLMoE, Qwen2-MoE and Qwen3-MoE compute
// them (modeling_*.py, eager attention): linear layers, token embeddings, self-attention with grouped-query
// heads, rotary embeddings in the rotate-half layout, q/k norms, a causal and optionally sliding-window mask and
// a KV cache; and what the commands do with the logits (NLL, greedy and top-p choice). Pure compute, no MPI.
// Every result of a token is independent of the other tokens in the call (a prefill of n tokens gives, row for
// row, what n one-token calls on the same cache give) to 1e-5 relative.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <vector>

#include "epmoe/base/shape.hpp"
#include "epmoe/ops/packed_linear.hpp"

namespace epmoe {

// One decoder layer's attention: h <- h + o(attn(rope(qk_norm(q(x))), rope(qk_norm(k(x))), v(x))), x =
// RMSNorm(h) with input_norm. Shapes with q_dim = num_heads * head_dim, kv_dim = num_kv_heads * head_dim.
struct PackedProjections;

struct AttentionWeights {
    std::vector<float> input_norm;      // [d_model]
    std::vector<float> wq, wk, wv, wo;  // [q_dim, d_model], [kv_dim, d_model], [kv_dim, d_model], [d_model, q_dim]
    std::vector<float> bq, bk, bv, bo;  // [q_dim], [kv_dim], [kv_dim], [d_model]; empty = no bias
    std::vector<float> q_norm, k_norm;  // QkNorm::kWhole: [q_dim], [kv_dim]; kPerHead: [head_dim] each; else empty
    std::shared_ptr<const PackedProjections> packed;  // pack_projections: then wq .. wo are empty; else null
};

// A layer's projections packed once for oneDNN's brgemm (PackedLinear), for weights that do not change while they
// run (eval, generate): W_q, W_k and W_v stacked as one [q_dim + 2 kv_dim, d_model], and W_o. At a decode step of
// 16 sequences the runtime-shape sgemm repacks every weight inside every call.
struct PackedProjections {
    PackedLinear qkv, o;
    size_t bytes() const { return qkv.packed_bytes() + o.packed_bytes(); }
};

// Packs w's projections into w.packed and empties wq .. wo, where PackedLinear packs on this CPU (AVX-512);
// elsewhere leaves w as it is. attention() and attention_sequences() then run the packed ones.
void pack_projections(AttentionWeights& w, int d_model, const DecoderShape& shape);

// y = x W^T + b: x [n, in], w [out, in] (a PyTorch Linear's weight), b [out] or empty, y [n, out].
void linear(std::span<const float> x, int64_t n, int in, std::span<const float> w, std::span<const float> b, int out,
            std::span<float> y);

// out[t] = table[ids[t]]: table [vocab, d_model], out [ids.size(), d_model]. Ids are checked by the caller.
void embed_tokens(std::span<const float> table, int d_model, std::span<const int32_t> ids, std::span<float> out);

// One sequence's keys (after q/k norm and RoPE) and values so far, for every layer's attention of it.
struct KvCache {
    std::vector<float> k, v;  // [length, kv_dim] each
    int64_t length = 0;       // positions held: the next token is at position `length`
};

// Reused buffers of attention(); nothing in them outlives a call. A block is up to 64 query rows; a group is
// the query heads that read one kv head.
struct AttentionScratch {
    std::vector<float> q;          // [n, q_dim] after q_norm and RoPE
    std::vector<float> group_q;    // [rows * group, head_dim]: one block's queries of one group, stacked
    std::vector<float> scores;     // [rows * group, keys]: their probabilities over the keys the block reads
    std::vector<float> group_out;  // [rows * group, head_dim]: their contexts
    std::vector<float> context;    // [n, q_dim]: every head's context, heads concatenated
    std::vector<float> all_q, all_kv, all_context;  // attention_sequences: every sequence's rows
    std::vector<float> qkv;                         // packed projections: [n, q_dim + 2 kv_dim] before the split
};

// Self-attention of one sequence's next n tokens at positions cache.length .. cache.length + n - 1:
// x [n, d_model] is RMSNorm(h) (input_norm applied by the caller); appends the n keys and values to cache;
// writes out [n, d_model] = o_proj(attention) + bo (no residual). As HF: q/k/v projections with biases where
// present; q_norm/k_norm (RMSNorm with eps) over the whole projection (QkNorm::kWhole) or each head
// (kPerHead), before RoPE; RoPE with inv_freq = 1 / theta^(2j / head_dim) in float32, cos/sin of
// position * inv_freq, q * cos + rotate_half(q) * sin; scores q.k * head_dim^-0.5, keys j <= i, and with
// sliding_window w > 0 also i - j < w; softmax in FP32 or wider; query head h reads kv head
// h / (num_heads / num_kv_heads).
void attention(const AttentionWeights& w, const DecoderShape& shape, int d_model, double eps, std::span<const float> x,
               int64_t n, KvCache& cache, std::span<float> out, AttentionScratch& scratch);

// attention() of several sequences at once: x [sum of lengths, d_model] their rows in order, sequence s the next
// lengths[s] rows of *caches[s] (0: none). The q/k/v and o projections run over every row in one GEMM each (a
// decode step of B sequences reads each weight once, not B times); norms, RoPE, the cache and the softmax per
// sequence. Each row's result equals attention()'s to float rounding.
void attention_sequences(const AttentionWeights& w, const DecoderShape& shape, int d_model, double eps,
                         std::span<const float> x, std::span<const int64_t> lengths, std::span<KvCache* const> caches,
                         std::span<float> out, AttentionScratch& scratch);

// -log softmax(logits)[target], in double: logits [vocab].
double token_nll(std::span<const float> logits, int32_t target);

// The first index of the largest logit (torch.argmax); a NaN anywhere is an epmoe::Error.
int32_t argmax(std::span<const float> logits);

// A token drawn as HF's generate(do_sample=True, temperature, top_p, top_k=0) draws it: logits / temperature,
// softmax, keep the smallest set of most probable tokens whose probability reaches top_p (at least one),
// renormalise, draw with rng. temperature > 0, 0 < top_p <= 1.
int32_t sample_top_p(std::span<const float> logits, double temperature, double top_p, std::mt19937_64& rng);

}  // namespace epmoe
