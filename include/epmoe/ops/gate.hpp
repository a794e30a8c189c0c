// The gate (router) projection of an MoE layer: one logit per expert and token. Pure compute; each row is
// accumulated alone in double, in a fixed order, so a token's logits do not depend on its batch. Also the
// backward of the gate and of the router's weights (moe/router.hpp's route() is the forward; its math is here
// because moe/ depends on ops/). Backwards add into their gradient outputs (norm.hpp says why).
#pragma once

#include <cstdint>
#include <span>

#include "epmoe/base/shape.hpp"

namespace epmoe {

// logits[t, e] = sum_j w_gate[e, j] * x[t, j], accumulated in double.
// x: [num_tokens, d_model]; w_gate: [num_experts, d_model]; logits: [num_tokens, num_experts].
void gate_logits(std::span<const float> x, std::span<const float> w_gate, int d_model, int num_experts,
                 std::span<float> logits);

// The backward of gate_logits: dx += dlogits w_gate, dw_gate += dlogits^T x (FP32 GEMMs). Takes the forward's
// input x. x, dx: [num_tokens, d_model]; w_gate, dw_gate: [num_experts, d_model]; dlogits: [num_tokens,
// num_experts]. dx or dw_gate may be empty (not wanted).
void gate_logits_backward(std::span<const float> x, std::span<const float> w_gate, int d_model, int num_experts,
                          std::span<const float> dlogits, std::span<float> dx, std::span<float> dw_gate);

// The backward of route()'s weights with respect to the gate logits: dlogits += d weights/d logits^T dweights.
// The experts route() selected (expert_ids) are taken as given: top-k selection and the selection bias are not
// differentiated, and only the selected weights carry gradient, through the scores of every expert under
// softmax (sum-to-one couples them) and through the selected experts' own under sigmoid. With norm_topk the
// weights are score / (sum of the selected scores), as route() computes them. Per row, in double.
// logits, dlogits: [num_tokens, num_experts]; expert_ids, dweights: [num_tokens, top_k].
void route_weights_backward(std::span<const float> logits, int num_experts, std::span<const int32_t> expert_ids,
                            int top_k, GateKind gate, bool norm_topk, std::span<const float> dweights,
                            std::span<float> dlogits);

}  // namespace epmoe
