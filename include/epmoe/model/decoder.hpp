// The parts of a whole decoder beside its MoE blocks, as every rank holds them (replicated: attention is
// data-parallel): token embeddings, each layer's input norm and attention, the final norm and the LM head.
// Pure data; no MPI.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "epmoe/base/shape.hpp"
#include "epmoe/ops/attention.hpp"

namespace epmoe {

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
