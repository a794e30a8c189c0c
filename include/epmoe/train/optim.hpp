// The optimizer of `epmoe train`: the registry of trainable FP32 tensors the trainer fills, the gradient
// all-reduce of replicated tensors, the global gradient norm and its clipping (torch.nn.utils.clip_grad_norm_),
// AdamW (torch.optim.AdamW) and the learning-rate schedule (linear warmup, cosine decay to a floor). Every
// result is a deterministic function of the inputs and the rank count: no threads, fixed summation orders.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "epmoe/comm/mpi.hpp"

namespace epmoe {

// What a parameter is, for the weight-decay rule (weight_decay_applies).
enum class ParamKind {
    kWeight,  // a matrix: embeddings, attention and MLP projections, the LM head
    kNorm,    // an RMSNorm weight (input, post-attention, q/k, final)
    kBias,    // a projection's bias
    kRouter,  // an MoE layer's gate (router) weight; Qwen2-MoE's shared_expert_gate counts as a weight
};

// Weight decay applies to matrices, never to norms and biases, and to the router only when decay_router
// (the usual rule: GPT-2/nanoGPT decay every 2-D tensor; MoE recipes often exempt the router).
bool weight_decay_applies(ParamKind kind, bool decay_router);

// One trainable tensor as the trainer holds it. The spans point into the trainer's own buffers, which must
// outlive the registry.
struct Param {
    std::string name;        // the Hugging Face name, e.g. "model.layers.0.mlp.gate.weight"
    std::span<float> value;  // [numel]: the FP32 master weights, updated in place by AdamW::step
    std::span<float> grad;   // [numel]: its gradient (see allreduce_gradients for the convention)
    bool decay = true;       // AdamW's weight decay applies (weight_decay_applies)
    // The ranks that each hold a replica of this tensor and sum their gradients: the world for replicated
    // weights (attention, norms, embeddings, routers), the replicas of an expert's group under DP x EP; nullptr
    // when this rank alone holds it (an expert in pure EP). Not owned; must outlive the registry.
    const mpi::Comm* replicas = nullptr;
};

// The trainable tensors of one rank, in registration order (every rank registers its replicated tensors in the
// same order, before any tensor whose replicas are a smaller group: allreduce_gradients reduces communicators in
// the order their first tensor was registered).
class ParamRegistry {
public:
    // Adds p; fails (EPMOE_ASSERT: a trainer bug) on value and grad of different sizes. Returns its index.
    size_t add(Param p);
    size_t size() const { return params_.size(); }
    const Param& operator[](size_t i) const { return params_[i]; }
    std::span<const Param> params() const { return params_; }
    // Elements over every registered tensor of this rank.
    uint64_t numel() const;
    // Sets every gradient to 0 (the backward accumulates into them).
    void zero_grad();

private:
    std::vector<Param> params_;
};

// Sums each tensor's gradient over its replicas (MPI_Allreduce, SUM), in place, in calls of at most
// max_buffer_floats (256 Ki: 1 MiB): a tensor that size or larger is reduced where it lies, one piece a call;
// smaller ones are packed into one buffer of that size (a tensor may straddle two calls). Pieces, not one large
// call: on 2 ranks of the 2-vCPU AMD EPYC Zen 4, 42 MB summed in 1 MiB calls took 9.0 ms with Open MPI 4.1.4 and
// 11.9 with MPICH 4.0, in one call 20.9 and 23.2 (4 oversubscribed Open MPI ranks: 22.3 against 69.2). The
// convention: each
// rank's gradient is that of its share of the global loss (the loss of its own tokens divided by the global
// token count), so the sum is the gradient of the global mean loss; an expert's gradient, which the exchange
// already brings from every rank's tokens, needs the same normalisation and no reduction in pure EP. Tensors
// with replicas == nullptr or a communicator of size 1 are left as they are. Collective over every
// communicator named.
void allreduce_gradients(const ParamRegistry& params, size_t max_buffer_floats = size_t{1} << 18);

// This rank's share of the squared L2 norm of the whole model's gradients, in double: the squares of the tensors
// it holds alone and of those of which it is rank 0 among the replicas, so that, after allreduce_gradients (every
// replica holds the same gradient), the shares of all ranks sum to the squared norm with each tensor counted
// once, whatever the rank count. Pure compute.
double grad_sq_share(const ParamRegistry& params);

// The L2 norm of every gradient of the whole model: sqrt of the sum over `world` of grad_sq_share (every rank
// gets the same value). Collective over world.
double global_grad_norm(const ParamRegistry& params, const mpi::Comm& world);

// torch.nn.utils.clip_grad_norm_'s scaling, given the global norm: coef = max_norm / (norm + 1e-6); when coef < 1
// every gradient is multiplied by (float)coef. A NaN or Inf norm scales nothing (the caller stops). Pure compute.
// Fails (epmoe::Error) unless max_norm is finite and > 0.
void clip_gradients(const ParamRegistry& params, double norm, double max_norm);

// clip_grad_norm_(max_norm) over the whole model: global_grad_norm, then clip_gradients. Returns the norm before
// clipping. Collective over world.
double clip_grad_norm(const ParamRegistry& params, const mpi::Comm& world, double max_norm);

// AdamW's hyper-parameters (torch.optim.AdamW's defaults); valid once built.
struct AdamWConfig {
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.01;  // for the tensors with Param::decay; the others get 0
    AdamWConfig() = default;     // torch's defaults
    // Fails (epmoe::Error naming the value) unless 0 <= b1, b2 < 1, epsilon > 0, decay >= 0, all finite.
    AdamWConfig(double b1, double b2, double epsilon, double decay);
};

// torch.optim.AdamW (torch 1.13's single-tensor path, amsgrad off) over a registry, FP32 state. Step t
// (1-based) of each element, with g its gradient, lr the step's rate and wd the tensor's decay (0 if !decay):
//   p <- p * (1 - lr * wd)                         (decoupled weight decay, first)
//   m <- beta1 * m + (1 - beta1) * g
//   v <- beta2 * v + (1 - beta2) * g * g
//   p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// The scalar factors are computed in double and rounded to float once; the element arithmetic is float, in
// this order, as torch's CPU kernels do it (agreement to a few float ulps, not bit for bit).
class AdamW {
public:
    // State (m = v = 0, t = 0) for every tensor of params, which must not change size afterwards.
    AdamW(const ParamRegistry& params, AdamWConfig config);
    // One update of every tensor from its gradient, t += 1. lr finite and >= 0.
    void step(const ParamRegistry& params, double lr);

    // Steps taken (t); set_steps restores it on resume.
    int64_t steps() const { return steps_; }
    void set_steps(int64_t steps) { steps_ = steps; }
    // Tensor i's first and second moments, [numel] each (to save and restore on resume).
    std::span<float> exp_avg(size_t i) { return exp_avg_[i]; }
    std::span<float> exp_avg_sq(size_t i) { return exp_avg_sq_[i]; }
    const AdamWConfig& config() const { return config_; }

private:
    AdamWConfig config_;
    int64_t steps_ = 0;
    std::vector<std::vector<float>> exp_avg_, exp_avg_sq_;  // [num params][numel]
};

// The learning rate of each step, nanoGPT's get_lr (karpathy/nanoGPT train.py), with step 0-based:
//   step <  warmup_steps:  max_lr * (step + 1) / (warmup_steps + 1)
//   step >= decay_steps:   min_lr
//   otherwise:             min_lr + 0.5 * (1 + cos(pi * r)) * (max_lr - min_lr), r = (step - warmup_steps) /
//                          (decay_steps - warmup_steps)
// so the rate rises to max_lr over the warmup, falls along half a cosine and stays at min_lr from decay_steps
// on (decay_steps: usually the run's total steps). warmup_steps = 0 and min_lr = max_lr give a constant rate.
class LrSchedule {
public:
    // Fails (epmoe::Error naming the value) unless 0 <= min_lr <= max_lr, both finite, and
    // 0 <= warmup_steps <= decay_steps.
    LrSchedule(double max_lr, double min_lr, int64_t warmup_steps, int64_t decay_steps);
    // The rate of step `step` (0-based, >= 0).
    double at(int64_t step) const;

private:
    double max_lr_, min_lr_;
    int64_t warmup_steps_, decay_steps_;
};

}  // namespace epmoe
