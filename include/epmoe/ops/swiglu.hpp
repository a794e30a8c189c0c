// SwiGLU MLPs run through a model's MlpKernel (mlp_kernel.hpp): routed experts, dense layers, shared
// experts. Pure compute; no MPI.
#pragma once

#include <span>
#include <vector>

#include "epmoe/ops/mlp_kernel.hpp"

namespace epmoe {

// A SwiGLU MLP every rank holds whole: a dense layer's `mlp`, or Qwen2-MoE's shared expert.
struct DenseMlp {
    int d_ff = 0;     // its intermediate size
    ExpertWeights w;  // w13 [2 * d_ff, d_model], w2 [d_model, d_ff]
};

// y = W2 · (silu(W1 · x) ⊙ (W3 · x)) for every row of x.
// x: [num_tokens, d_model]; y: [num_tokens, d_model]; scratch is reused and may be resized.
void expert_forward(const MlpKernel& kernel, const ExpertWeights& w, int d_model, int d_ff, std::span<const float> x,
                    std::span<float> y, std::vector<float>& scratch);

// A whole-on-every-rank MLP (dense layer or shared expert): y = mlp(x). x, y: [num_tokens, d_model].
void dense_forward(const MlpKernel& kernel, const DenseMlp& mlp, int d_model, std::span<const float> x,
                   std::span<float> y, std::vector<float>& scratch);

// Qwen2-MoE's shared expert: out[t] += sigmoid(gate · x[t]) * mlp(x[t]). gate: [d_model];
// x, out: [num_tokens, d_model]; y is resized to [num_tokens, d_model].
void add_shared_expert(const MlpKernel& kernel, const DenseMlp& mlp, std::span<const float> gate, int d_model,
                       std::span<const float> x, std::span<float> out, std::vector<float>& y,
                       std::vector<float>& scratch);

}  // namespace epmoe
