// SwiGLU experts on OpenBLAS: one fused W1|W3 GEMM, SiLU-multiply in one pass, one W2 GEMM.
// Pure compute; no MPI.
#pragma once

#include <span>
#include <vector>

#include "epmoe/model.hpp"

namespace epmoe {

// y = W2 · (silu(W1 · x) ⊙ (W3 · x)) for every row of x.
// x: [num_tokens, d_model]; y: [num_tokens, d_model]; scratch is resized to [num_tokens, 2 * d_ff].
void expert_forward(const ExpertWeights& w, int d_model, int d_ff, std::span<const float> x, std::span<float> y,
                    std::vector<float>& scratch);

}  // namespace epmoe
