// RMSNorm, as Hugging Face's MixtralRMSNorm/Qwen2MoeRMSNorm compute it (in double here), and its backward. Pure
// compute. Backward convention of every op in ops/ (llm.c's): a backward ADDS into its gradient outputs, inputs'
// and parameters' alike, so the caller zeroes them once per step and sums (residual paths, layers, micro-batches,
// tied weights) come free; no gradient output may alias an input.
#pragma once

#include <cstddef>
#include <span>

namespace epmoe {

// sum of x[i]^2 over n floats, in double over 8 fixed lanes (lane i mod 8, the lanes added in order, then the
// tail): RMSNorm's mean (forward and backward) and the training gradient norm.
double sum_of_squares(const float* x, size_t n);

// out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * g.  x, out: [num_tokens, d_model]; g: [d_model].
void rms_norm(std::span<const float> x, std::span<const float> g, double eps, std::span<float> out);

// The backward of rms_norm, from its input x (what the forward read; nothing else is saved) and dout, the
// gradient of its output: dx += d out/dx^T dout, dg += sum over rows of dout * x / rms(x). Per row, in double:
// dx = r (g dout - x r^2 mean(g dout x)) with r = 1 / sqrt(mean(x^2) + eps).
// x, dout, dx: [num_tokens, d_model]; g, dg: [d_model]; dg may be empty (no weight gradient wanted).
void rms_norm_backward(std::span<const float> x, std::span<const float> g, double eps, std::span<const float> dout,
                       std::span<float> dx, std::span<float> dg);

}  // namespace epmoe
