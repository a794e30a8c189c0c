// What `epmoe run` computes on: the model (synthetic, or a Hugging Face checkpoint's layers with this
// rank's experts) and the tokens of each step (synthetic, or --input's rows for this rank).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "epmoe/base/config.hpp"
#include "epmoe/comm/mpi.hpp"
#include "epmoe/control/policy.hpp"
#include "epmoe/io/input.hpp"
#include "epmoe/model/checkpoint.hpp"
#include "epmoe/model/decoder.hpp"
#include "epmoe/model/model.hpp"
#include "epmoe/model/synthetic.hpp"
#include "epmoe/moe/placement.hpp"

namespace epmoe {

// The model of a run. With model.path set, the checkpoint is opened (headers only) on construction.
class ModelSource {
public:
    // Collective: a bad checkpoint on any rank is an AgreedError on every rank. whole_model: the decoder around
    // the MoE blocks is needed too (eval, generate): every layer, and a checkpoint's attention, embeddings and LM
    // head checked now, before anything loads.
    ModelSource(const mpi::Comm& comm, const Config& config, bool whole_model = false);
    ~ModelSource();

    // The shape of the layers run (num_layers = layers selected by model.layers).
    const ModelShape& shape() const { return shape_; }
    // Builds every layer's shared parts and the experts e with owns(e), after checking that the ranks of each
    // host fit its memory (check_memory) with `tokens` tokens a rank. in_place: a kernel that reads the FP32
    // weights as loaded (training updates them; make_mlp_kernel). Collective (all_or_none).
    Model load(const mpi::Comm& comm, const std::function<bool(int)>& owns, int64_t tokens, bool in_place = false);
    // Bytes a rank holding owned_experts experts needs for the weights (FP32 as loaded) and its token
    // buffers at `tokens` tokens a step: an estimate from the shape, what check_memory compares.
    uint64_t bytes_needed(int owned_experts, int64_t tokens) const;
    // Fails on every rank (AgreedError) when the ranks of a host need more bytes than its MemAvailable, naming
    // both figures. Collective.
    void check_memory(const mpi::Comm& comm, int owned_experts, int64_t tokens) const;
    // The replicated parts of the whole model (whole_model only): the checkpoint's, or the synthetic ones drawn
    // from the seed. Collective (all_or_none).
    DecoderWeights load_decoder(const mpi::Comm& comm) const;
    // The checkpoint's eos_token_ids and pad_token_id (whole_model; none for a synthetic model).
    std::vector<int32_t> eos_token_ids() const {
        return checkpoint_ ? checkpoint_->info().eos_token_ids : std::vector<int32_t>();
    }
    int32_t pad_token_id() const { return checkpoint_ ? checkpoint_->info().pad_token_id : -1; }
    // The checkpoint's description (null for a synthetic model).
    const CheckpointInfo* checkpoint_info() const { return checkpoint_ ? &checkpoint_->info() : nullptr; }
    // The checkpoint's family (Mixtral for a synthetic model).
    Family family() const { return checkpoint_ ? checkpoint_->info().family : Family::kMixtral; }
    // summary.json's "model": sizes and source (synthetic, or family, path and layers of a checkpoint).
    Json describe() const;
    // summary.json's "memory": weight bytes held, checkpoint bytes converted and peak RSS (bytes), per rank.
    // Collective; the result is complete on rank 0.
    Json memory(const mpi::Comm& comm, const Model& model) const;

private:
    Checkpoint::LoadProgress load_progress(const std::function<bool(int)>& owns) const;

    const Config& config_;
    ModelShape shape_;
    std::unique_ptr<Checkpoint> checkpoint_;  // null for a synthetic model
    int first_layer_ = 0, last_layer_ = 0;    // checkpoint layers run, inclusive
};

// The tokens of each step on this rank.
class TokenSource {
public:
    // Reads --input's rows for this rank (collective, all_or_none), or sets up the synthetic workload.
    TokenSource(const mpi::Comm& comm, const Config& config, int d_model);

    int64_t num_tokens() const { return num_tokens_; }    // this rank's tokens per step
    int64_t first_token() const { return first_token_; }  // global index of this rank's first token
    int64_t step_tokens() const { return step_tokens_; }  // tokens per step over all ranks
    // Fills h [num_tokens, d_model] with this rank's tokens of `step` (--input: its step `step` mod S).
    void fill(int step, std::span<float> h) const;

private:
    int64_t num_tokens_ = 0, first_token_ = 0, step_tokens_ = 0;
    std::unique_ptr<SyntheticWorkload> synthetic_;
    InputShard input_;
};

// The placement of config.placement.name over world's ranks. Rank 0 reads placement.profile (an earlier run's
// metrics.jsonl) when set and broadcasts it; fails on every rank naming the file when it cannot. Collective.
// num_ranks: the ranks the experts are spread over (a training group, groups.hpp); 0 = world.size().
Placement run_placement(const mpi::Comm& world, const Config& config, int num_experts, int num_ranks = 0);

// What a policy needs to know about the job: sizes, the placement's owner map and the seed.
PolicyContext policy_context(const Config& config, const Placement& placement, int num_layers);

}  // namespace epmoe
