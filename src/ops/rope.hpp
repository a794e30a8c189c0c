// Rotary position embeddings in Hugging Face's rotate-half layout (private to ops/attention.cpp and its tests
// through the public attention()). Pure compute.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace epmoe {

// HF's default RoPE frequencies, in float32 as torch computes them:
// inv_freq[j] = 1 / theta^(float(2j) / head_dim), j < head_dim / 2. Returns [head_dim / 2].
std::vector<float> rope_inv_freq(double theta, int head_dim);

// Rotates each of num_heads heads of every token in place, x [n, num_heads * head_dim], token t at position
// first_position + t: x_h <- x_h * cos + rotate_half(x_h) * sin with rotate_half(x) = cat(-x[half:], x[:half]),
// cos/sin of float(position) * inv_freq (a float32 product, as HF), each half of the head sharing frequency j.
void apply_rope(std::span<float> x, int64_t n, int num_heads, int head_dim, int64_t first_position,
                std::span<const float> inv_freq);

}  // namespace epmoe
