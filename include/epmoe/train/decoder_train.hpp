// One training step of the whole decoder on this rank's sequences: the forward keeping each layer's activations,
// the losses (LM cross-entropy over the global batch, Hugging Face's load-balancing auxiliary loss), and the
// backward, the forward reversed (llm.c's train_gpt2.c shape): LM head, final norm, then per layer the MoE block
// (through the expert exchange, moe/train.hpp) and attention, then the embeddings. FP32 only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "epmoe/comm/mpi.hpp"
#include "epmoe/model/decoder.hpp"
#include "epmoe/model/model.hpp"
#include "epmoe/moe/dispatch.hpp"
#include "epmoe/moe/placement.hpp"

namespace epmoe {

// Gradients in the weights' own layout: a Model (this rank's experts, every layer's gate, norms, dense and
// shared MLPs) and a DecoderWeights, each tensor the gradient of the one in the same place. So a checkpoint
// writer writes them under the same Hugging Face names (--dump-grads).
struct ModelGrads {
    Model model;
    DecoderWeights decoder;
};

// Zeroed gradients shaped as the weights (the same owned experts).
ModelGrads make_grads(const Model& model, const DecoderWeights& decoder);
void zero_grads(ModelGrads& grads);

// One sequence of a batch: ids [S] at positions 0..S-1 and targets [S] (targets[t]: the token position t
// predicts, or kIgnoreIndex).
struct TrainSequence {
    std::vector<int32_t> ids, targets;
};

// The step's losses over the global batch (every rank the same).
struct TrainLosses {
    double lm = 0;            // mean cross-entropy over the global batch's targets
    double aux = 0;           // HF's load_balancing_loss_func over every MoE layer (unscaled); 0 without MoE layers
    int64_t targets = 0;      // targets scored over all ranks
    int64_t tokens = 0;       // tokens over all ranks
    double drop_rate = 0;     // assignments dropped by capacity over all
    double z = 0;             // the ST-MoE router z-loss (unscaled; aux_loss.hpp)
    double gate_entropy = 0;  // the router softmax's mean entropy, nats
    double load_cv = 0;       // std / mean of each MoE layer's kept expert load, averaged over layers
    std::vector<double> expert_load;  // [MoE layers, E] kept assignments of the global batch
};

// Seconds of the step's parts on this rank.
struct TrainTimes {
    double forward = 0, backward = 0;  // each including its exchanges
    LayerTimes moe;                    // the MoE blocks' own parts, forward and backward
};

class ParamRegistry;

// Registers every trainable tensor with its gradient in grads: the replicated ones first (attention, norms,
// routers, dense and shared MLPs, embeddings, LM head; summed over `world`), then this rank's experts (summed
// over expert_replicas: the ranks holding the same experts under DP x EP, groups.hpp; nullptr = this rank's
// alone, pure EP). The same order on every rank. decay_router: AdamW's weight decay on the routers too.
void register_params(ParamRegistry& registry, Model& model, DecoderWeights& decoder, ModelGrads& grads,
                     const mpi::Comm& world, bool decay_router, const mpi::Comm* expert_replicas = nullptr);

class DecoderTrainer {
public:
    // model: FP32 weights (w13, w2 kept), this rank's experts as placement gives them. aux_coef: the weight of
    // the auxiliary loss in the loss differentiated (router_aux_loss_coef); z_coef: the router z-loss's.
    DecoderTrainer(const Model& model, const DecoderWeights& decoder, const Placement& placement,
                   const DispatchOptions& options, double aux_coef, double z_coef = 0);
    ~DecoderTrainer();

    // Forward and backward of this rank's share of the global batch; ADDS the gradient of lm + aux_coef * aux + z_coef
    // * z into grads (replicated parts: this rank's contribution, to be summed over ranks; experts: complete).
    // Collective over comm. Pure EP: the tokens are exchanged over comm, the losses reduced over it.
    TrainLosses step(const mpi::Comm& comm, std::span<const TrainSequence> batch, ModelGrads& grads);
    // The same under DP x EP (groups.hpp): tokens exchanged over ep (this rank's group, whose ranks the
    // placement names; capacity counts the group's tokens), the losses reduced over world, whose ranks hold the
    // global batch (LM loss: its mean; aux: every token's routing). ADDS this rank's share of the gradient of the
    // global loss: experts' gradients from the group's tokens only, to be summed over the expert's replicas.
    // Collective over ep and world.
    TrainLosses step(const mpi::Comm& ep, const mpi::Comm& world, std::span<const TrainSequence> batch,
                     ModelGrads& grads);
    const TrainTimes& times() const { return times_; }
    // Called before each layer of the forward and of the backward and each chunk of the LM head (where "forward,
    // layer", "backward, layer" or "LM head, chunk"; index counted from 0, of count), for a progress line inside a
    // long step; this rank's alone, not collective. None: unset.
    using Progress = std::function<void(const char* where, int index, int count)>;
    void set_progress(Progress progress);
    // Selection biases [num_layers, num_experts] (the aux-free policy's) for the steps that follow; empty = none.
    // They pick the top-k only; the weights and the losses use the unbiased scores, as at inference.
    void set_biases(std::span<const float> biases);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    TrainTimes times_;
    Progress progress_;
};

}  // namespace epmoe
