// The whole model as eval and generate run it on top of a Job: the replicated decoder weights, the forward of a
// step of sequences, and what both commands report about it (time breakdown, expert load, energy).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "app/job.hpp"
#include "epmoe/model/decoder_forward.hpp"
#include "epmoe/model/sharded_head.hpp"
#include "epmoe/ops/packed_linear.hpp"

namespace epmoe {

// The LM head as the forwards run it: whole on every rank, or split over the ranks by vocabulary.
struct InferenceHead {
    PackedLinear whole;
    std::unique_ptr<ShardedHead> sharded;  // when set, whole is empty and unused
    size_t packed_bytes() const { return whole.packed_bytes() + (sharded ? sharded->packed_bytes() : 0); }
};

class WholeModel {
public:
    // Loads the decoder's replicated weights (collective). shard_head: the LM head split over the ranks by
    // vocabulary (ShardedHead: generate, whose steps want a few rows' logits); else whole on every rank (eval).
    WholeModel(const mpi::Comm& world, Job& job, bool shard_head = false);

    // One step over this rank's chunks (each appended to its cache; empty: the rank only takes part in the
    // exchanges). Collective.
    StepResult step(int step, std::span<const SequenceChunk> chunks, LogitRows rows, std::vector<float>& logits);
    // One step of fresh sequences, one per ids vector (their caches dropped after the step). Collective.
    StepResult step(int step, const std::vector<std::vector<int32_t>>& ids, LogitRows rows, std::vector<float>& logits);

    // One step of fresh sequences outside the run's bookkeeping (tokens, times, loads): --policy ttt's held-out
    // checks. Collective.
    void step_aside(const std::vector<std::vector<int32_t>>& ids, std::vector<float>& logits);

    int64_t last_tokens() const { return last_tokens_; }         // this rank's tokens of the last step
    double last_flops() const { return forward_.last_flops(); }  // its attention and LM-head FLOPs
    const DecoderWeights& decoder() const { return decoder_; }
    // This rank's seconds so far in each part of times_json's breakdown, in its order.
    std::vector<double> local_parts() const;
    static const std::vector<std::string>& part_names();

    // {tokens_run, seconds, tokens_per_s, time_breakdown_s: {embed, attention, gate, dispatch, experts, combine,
    // lm_head} (mean over ranks), expert_load: [layer][expert] assignments summed over steps (dense: null),
    // weight_bytes_per_rank: {replicated (decoder, gates, norms, dense and shared MLPs), experts}}.
    // seconds: the steps' wall time. Collective; complete on rank 0.
    Json times_json(const mpi::Comm& world, double seconds);

private:
    // forward's step over the chunks, with the step's global token offsets; tokens: this rank's. Collective.
    StepResult run(DecoderForward& forward, std::span<const SequenceChunk> chunks, LogitRows rows,
                   std::vector<float>& logits, int64_t& tokens);

    const mpi::Comm& world_;
    Job& job_;
    DecoderWeights decoder_;
    InferenceHead head_;
    DecoderForward forward_;
    DecoderForward aside_;  // step_aside's: its times stay out of forward_'s
    int64_t last_tokens_ = 0, tokens_run_ = 0;
    LayerTimes moe_times_;
    std::vector<std::vector<int64_t>> load_;  // [num_layers][num_experts] this rank's kept assignments
};

// The figures eval.json and generate's report take from summary.json: energy (source, joules, J/token of the
// tokens run) and the peak RSS per rank.
Json whole_model_load_and_energy(const Json& summary);

// The human summary of eval (rank 0).
void print_eval(const Json& eval, const std::string& dir);

}  // namespace epmoe
