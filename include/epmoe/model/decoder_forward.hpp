// The whole decoder on this rank's sequences: embeddings, then per layer attention (data-parallel: each rank
// runs its own sequences against its replica of the attention weights) and the expert-parallel MoE block
// (Forward::layer, collective), then the final norm and the LM head.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "epmoe/comm/mpi.hpp"
#include "epmoe/model/decoder.hpp"
#include "epmoe/model/forward.hpp"
#include "epmoe/model/sharded_head.hpp"
#include "epmoe/ops/attention.hpp"
#include "epmoe/ops/packed_linear.hpp"

namespace epmoe {

// One sequence's keys and values, every layer: [num_layers].
struct SequenceCache {
    std::vector<KvCache> layers;
    int64_t length() const { return layers.empty() ? 0 : layers[0].length; }
};

// A sequence's tokens of one step: `ids` at positions cache->length() onwards, appended to its cache.
struct SequenceChunk {
    std::span<const int32_t> ids;
    SequenceCache* cache = nullptr;
};

// Which rows' logits a step computes: every token's (eval, dumps) or each chunk's last (prefill and decode).
enum class LogitRows { kAll, kLast };

// Seconds of the parts around the MoE blocks (the MoE block's own are in StepResult::times).
struct DecoderTimes {
    double embed = 0, attention = 0, lm_head = 0;
};

class DecoderForward {
public:
    // model: the MoE blocks (this rank's experts); decoder: the replicated parts; moe runs the blocks; head: the LM
    // head packed (eval; it outlives this), or null: decoder.head() through linear() (training's validation, whose
    // head changes every step); sharded: instead of head, the head split over the ranks by vocabulary (generate at
    // several ranks; it outlives this).
    DecoderForward(const Model& model, const DecoderWeights& decoder, Forward& moe, const PackedLinear* head = nullptr,
                   ShardedHead* sharded = nullptr);

    // Runs every chunk through the whole model (chunks may be empty: the rank still takes part in each MoE
    // exchange), writing logits [rows, vocab_size] (rows: every token, or one per chunk, in chunk order).
    // first_token: the global index of this rank's first token of the step; step_tokens: tokens over all ranks;
    // biases: [num_layers, num_experts] or empty. Collective over comm.
    StepResult step(const mpi::Comm& comm, std::span<const SequenceChunk> chunks, LogitRows rows, int64_t first_token,
                    int64_t step_tokens, std::span<const float> biases, std::vector<float>& logits);

    const DecoderTimes& times() const { return times_; }  // summed over steps
    // FLOPs of the attention and LM head of the last step on this rank (projections, scores, context, head).
    double last_flops() const { return last_flops_; }

private:
    void attention_layer(int l, std::span<const SequenceChunk> chunks);
    void lm_head(const mpi::Comm& comm, std::span<const SequenceChunk> chunks, LogitRows rows,
                 std::vector<float>& logits);

    const Model& model_;
    const DecoderWeights& decoder_;
    Forward& moe_;
    const PackedLinear* head_;
    ShardedHead* sharded_;
    DecoderTimes times_;
    double last_flops_ = 0;
    std::vector<float> h_, x_, out_;  // [tokens, d_model]: hidden states, normed input, attention output
    AttentionScratch scratch_;
};

// An empty cache for one sequence of a model with num_layers layers.
SequenceCache make_sequence_cache(int num_layers);

}  // namespace epmoe
