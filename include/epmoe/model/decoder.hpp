// The parts of a whole decoder beside its MoE blocks, as every rank holds them (replicated: attention is
// data-parallel): token embeddings, each layer's input norm and attention, the final norm and the LM head.
// Pure data; no MPI.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "epmoe/base/shape.hpp"

namespace epmoe {

// One decoder layer's attention: h <- h + o(attn(rope(qk_norm(q(x))), rope(qk_norm(k(x))), v(x))), x =
// RMSNorm(h) with input_norm. Shapes with q_dim = num_heads * head_dim, kv_dim = num_kv_heads * head_dim.
struct AttentionWeights {
    std::vector<float> input_norm;      // [d_model]
    std::vector<float> wq, wk, wv, wo;  // [q_dim, d_model], [kv_dim, d_model], [kv_dim, d_model], [d_model, q_dim]
    std::vector<float> bq, bk, bv, bo;  // [q_dim], [kv_dim], [kv_dim], [d_model]; empty = no bias
    std::vector<float> q_norm, k_norm;  // QkNorm::kWhole: [q_dim], [kv_dim]; kPerHead: [head_dim] each; else empty
};

struct DecoderWeights {
    std::vector<float> embed;              // [vocab_size, d_model]
    std::vector<float> final_norm;         // [d_model]
    std::vector<float> lm_head;            // [vocab_size, d_model]; empty when the embeddings are tied
    std::vector<AttentionWeights> layers;  // [num_layers]

    bool empty() const { return embed.empty(); }
    // The LM head's matrix: lm_head, or the embeddings when tied. [vocab_size, d_model]
    std::span<const float> head() const { return lm_head.empty() ? embed : lm_head; }
    // Bytes held (every rank holds them all).
    uint64_t bytes() const;
};

// Checks a decoder's weights against its shape (d_model, and shape.decoder): the sizes of every matrix and
// vector, a bias present on all of q/k/v or none. Fails (epmoe::Error) naming `source` and the part.
void check_decoder(const DecoderWeights& w, const ModelShape& shape, const char* source);

}  // namespace epmoe
