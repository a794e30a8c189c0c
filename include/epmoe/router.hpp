// The gate of an MoE layer: RMSNorm, gate logits, top-k selection with a bias, and gate weights.
// Pure compute over spans; no MPI, no I/O. Results do not depend on how many tokens are processed
// together (each row is computed alone, in double precision), so they do not depend on the rank count.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "epmoe/config.hpp"

namespace epmoe {

// out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * g.  x, out: [num_tokens, d_model]; g: [d_model].
void rms_norm(std::span<const float> x, std::span<const float> g, double eps, std::span<float> out);

// logits[t, e] = sum_j w_gate[e, j] * x[t, j], accumulated in double.
// x: [num_tokens, d_model]; w_gate: [num_experts, d_model]; logits: [num_tokens, num_experts].
void gate_logits(std::span<const float> x, std::span<const float> w_gate, int d_model, int num_experts,
                 std::span<float> logits);

struct Routing {
    int top_k = 0;
    std::vector<int32_t> expert_ids;  // [num_tokens, top_k], by descending score + bias; ties -> lower index
    std::vector<float> weights;       // [num_tokens, top_k], from the unbiased scores
    int64_t num_tokens() const { return top_k == 0 ? 0 : static_cast<int64_t>(expert_ids.size()) / top_k; }
};

// Scores each expert (softmax over all experts, or sigmoid per expert), selects the top_k by
// score + bias[e] (bias empty = zeros), and weights them with the unbiased scores, renormalised to sum
// to 1 when norm_topk. logits: [num_tokens, num_experts]; bias: [num_experts] or empty.
Routing route(std::span<const float> logits, int num_experts, int top_k, std::span<const float> bias, GateKind gate,
              bool norm_topk);

}  // namespace epmoe
