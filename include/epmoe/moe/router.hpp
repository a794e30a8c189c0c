// The router of an MoE layer: top-k selection on the gate's scores with a bias, and the gate weights
// (the gate logits themselves are ops/gate.hpp). Pure compute over spans; no MPI, no I/O. Each row is
// computed alone, so results do not depend on how many tokens are processed together, nor on the rank count.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "epmoe/base/shape.hpp"

namespace epmoe {

struct Routing {
    int top_k = 0;
    std::vector<int32_t> expert_ids;  // [num_tokens, top_k], by descending score + bias; ties -> lower index
    std::vector<float> weights;       // [num_tokens, top_k], from the unbiased scores
    int64_t num_tokens() const { return top_k == 0 ? 0 : static_cast<int64_t>(expert_ids.size()) / top_k; }
};

// Scores each expert (softmax over all experts, or sigmoid per expert), selects the top_k by
// score + bias[e] (bias empty = zeros), and weights them with the unbiased scores, renormalised to sum
// to 1 when norm_topk. logits: [num_tokens, num_experts]; bias: [num_experts] or empty. select_logits
// ([num_tokens, num_experts], --policy ttt's corrected logits) select in place of logits' scores when given;
// the weights still come from logits.
Routing route(std::span<const float> logits, int num_experts, int top_k, std::span<const float> bias, GateKind gate,
              bool norm_topk, std::span<const float> select_logits = {});

}  // namespace epmoe
