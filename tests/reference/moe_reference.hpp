// A plain single-process reference of the MoE stack: straightforward loops in double precision, no BLAS,
// no MPI, none of epmoe's router/expert/dispatch code. Tests compare the distributed runtime against it.
#pragma once

#include <cstdint>
#include <vector>

#include "epmoe/model/model.hpp"

namespace epmoe::reference {

struct Output {
    std::vector<float> hidden;                // [num_tokens, d_model] after all layers
    std::vector<std::vector<int32_t>> ids;    // [num_layers][num_tokens * top_k]
    std::vector<std::vector<float>> weights;  // [num_layers][num_tokens * top_k]
    std::vector<std::vector<uint8_t>> kept;   // [num_layers][num_tokens * top_k]
};

// Runs every layer on all tokens at once. model must hold every expert. capacity_factor 0 = dropless;
// otherwise each expert keeps the first ceil(X * num_tokens * top_k / E) assignments in token order.
// biases: [num_layers, num_experts] or empty.
Output forward(const Model& model, std::vector<float> hidden, double capacity_factor,
               const std::vector<float>& biases = {});

// The MLP part of layer `layer` for one token, in double: x [d_model] is its post-attention RMSNorm output.
// A dense layer runs its mlp; an MoE layer routes x (no bias, no capacity limit) to its top_k experts and sums
// their outputs weighted, plus Qwen2-MoE's shared expert sigmoid(shared_expert_gate · x) * shared(x).
// model must hold every expert in FP32. Returns [d_model].
std::vector<double> layer_mlp(const Model& model, int layer, const std::vector<double>& x);

// Relative L2 distance ||a - b|| / ||b|| of one row each.
double row_rel_l2(const float* a, const float* b, int n);

}  // namespace epmoe::reference
