// The load-balancing auxiliary loss exactly as Hugging Face's load_balancing_loss_func computes it for Mixtral,
// OLMoE, Qwen2-MoE and Qwen3-MoE (no attention mask): over the router logits of every MoE layer and every token
// of the global batch, p = softmax(logits), F_e = the fraction of (token, layer, slot) assignments to expert e
// (the top-k of p), P_e = the mean of p_e, aux = E * sum_e F_e P_e. Only P carries gradient (F is a count):
// d aux / d p_e = E F_e / (L N) for each of the L N (layer, token) rows.
// Beside it the router z-loss of ST-MoE (Zoph et al. 2022; transformers' router_z_loss_func of Switch
// Transformers, over the same concatenated rows): z = mean over the L N rows of logsumexp(logits)^2, whose
// gradient is d z / d logit_j = 2 logsumexp(logits) p_j / (L N).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "epmoe/comm/mpi.hpp"
#include "epmoe/moe/train.hpp"

namespace epmoe {

class AuxLoss {
public:
    // layers: this rank's saved MoE layers (logits and routing); global_tokens: N over all ranks. Collective.
    AuxLoss(const mpi::Comm& comm, std::span<const MoeBlockSaved* const> layers, int num_experts, int top_k,
            int64_t global_tokens);

    double value() const { return value_; }           // aux (unscaled); 0 without MoE layers
    double z_value() const { return z_value_; }       // the router z-loss (unscaled); 0 without MoE layers
    double drop_rate() const { return drop_rate_; }   // assignments dropped by capacity over all, every layer
    double gate_entropy() const { return entropy_; }  // mean entropy of the router's softmax over the L N rows, nats
    // Kept assignments of the global batch per MoE layer and expert, [L, E] (as doubles: sums of counts).
    std::span<const double> layer_load() const { return layer_load_; }
    // The coefficient of variation (std / mean over experts) of each layer's kept load, averaged over layers.
    double load_cv() const;
    // dlogits [tokens, E] += coef * d aux / d logits + z_coef * d z / d logits for one layer's rows on this rank.
    void add_gradient(const MoeBlockSaved& layer, double coef, double z_coef, std::span<float> dlogits) const;

private:
    int num_experts_ = 0;
    double rows_ = 0;                 // L N: the (layer, token) rows of the global batch
    std::vector<double> g_;           // [E]: d aux / d p_e of one row
    std::vector<double> layer_load_;  // [L, E]
    double value_ = 0, z_value_ = 0, drop_rate_ = 0, entropy_ = 0;
};

}  // namespace epmoe
