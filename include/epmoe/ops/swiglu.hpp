// SwiGLU MLPs run through a model's MlpKernel (mlp_kernel.hpp): routed experts, dense layers, shared
// experts; and, for training, their FP32 forward that keeps what the backward needs, and the backward. Pure
// compute; no MPI. Backwards add into their gradient outputs (norm.hpp says why).
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

// ---- Training (FP32 only). The BF16, oneDNN and AMX kernels are inference-only: training runs these cblas_sgemm
// functions on the FP32 w13 and w2 whatever compute.backend/dtype say. A dense layer's mlp is the same MLP:
// call them with DenseMlp::w and DenseMlp::d_ff.

// y = W2 · (silu(W1 · x) ⊙ (W3 · x)), as the onednn/fp32 kernel computes it (its bits), keeping what expert_backward
// needs besides x: h13 (resized to [num_tokens, 2 * d_ff]) = x W13^T, i.e. W1·x | W3·x before the SiLU.
// x, y: [num_tokens, d_model]; scratch is reused and may be resized.
void expert_forward_train(const ExpertWeights& w, int d_model, int d_ff, std::span<const float> x, std::span<float> y,
                          std::vector<float>& h13, std::vector<float>& scratch);

// The backward of an MLP from the forward's x and h13 and dy, the gradient of y: dx += dy dy/dx, grad.w13
// [2 * d_ff, d_model] += dh13^T x, grad.w2 [d_model, d_ff] += dy^T act (act = silu(W1·x) ⊙ W3·x, recomputed).
// x, dy, dx: [num_tokens, d_model]; h13: [num_tokens, 2 * d_ff]; dx may be empty (not wanted); grad.prepared
// is ignored. scratch is reused and may be resized.
void expert_backward(const ExpertWeights& w, int d_model, int d_ff, std::span<const float> x,
                     std::span<const float> h13, std::span<const float> dy, std::span<float> dx, ExpertWeights& grad,
                     std::vector<float>& scratch);

// What add_shared_expert_train keeps for shared_expert_backward (besides x).
struct SharedExpertSaved {
    std::vector<float> h13;    // [num_tokens, 2 * d_ff]: the MLP's W1·x | W3·x
    std::vector<float> y;      // [num_tokens, d_model]: mlp(x)
    std::vector<float> score;  // [num_tokens]: sigmoid(gate · x)
};

// Qwen2-MoE's shared expert in FP32, as add_shared_expert: out[t] += sigmoid(gate · x[t]) * mlp(x[t]); fills
// saved. gate: [d_model]; x, out: [num_tokens, d_model].
void add_shared_expert_train(const DenseMlp& mlp, std::span<const float> gate, int d_model, std::span<const float> x,
                             std::span<float> out, SharedExpertSaved& saved, std::vector<float>& scratch);

// Its backward, dout the gradient of out: with s = sigmoid(gate · x) and ds = dout · mlp(x), dx += s(1 - s) ds gate
// + (the MLP's backward of s dout), dgate [d_model] += sum over rows of s(1 - s) ds x, grad (the MLP's weights) as
// expert_backward. x, dout, dx: [num_tokens, d_model].
void shared_expert_backward(const DenseMlp& mlp, std::span<const float> gate, int d_model, std::span<const float> x,
                            const SharedExpertSaved& saved, std::span<const float> dout, std::span<float> dx,
                            ExpertWeights& grad, std::span<float> dgate, std::vector<float>& scratch);

}  // namespace epmoe
