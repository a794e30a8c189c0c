// The gate (router) projection of an MoE layer: one logit per expert and token. Pure compute; each row is
// accumulated alone in double, in a fixed order, so a token's logits do not depend on its batch.
#pragma once

#include <span>

namespace epmoe {

// logits[t, e] = sum_j w_gate[e, j] * x[t, j], accumulated in double.
// x: [num_tokens, d_model]; w_gate: [num_experts, d_model]; logits: [num_tokens, num_experts].
void gate_logits(std::span<const float> x, std::span<const float> w_gate, int d_model, int num_experts,
                 std::span<float> logits);

}  // namespace epmoe
