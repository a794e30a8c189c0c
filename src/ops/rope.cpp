// Rotary position embeddings (see rope.hpp): HF's LlamaRotaryEmbedding "default" type with apply_rotary_pos_emb.
#include "rope.hpp"

#include <cmath>

#include "epmoe/base/error.hpp"

namespace epmoe {

std::vector<float> rope_inv_freq(double theta, int head_dim) {
    EPMOE_ASSERT(head_dim > 0 && head_dim % 2 == 0 && theta > 0);
    // torch: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), every step in float32. The exponent is a
    // float32 quotient; pow is evaluated in double and rounded once, as a correctly rounded powf would.
    const float base = static_cast<float>(theta);
    std::vector<float> inv_freq(static_cast<size_t>(head_dim / 2));
    for (int j = 0; j < head_dim / 2; ++j) {
        const float exponent = static_cast<float>(2 * j) / static_cast<float>(head_dim);
        const float power = static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(exponent)));
        inv_freq[static_cast<size_t>(j)] = 1.0f / power;
    }
    return inv_freq;
}

void apply_rope(std::span<float> x, int64_t n, int num_heads, int head_dim, int64_t first_position,
                std::span<const float> inv_freq) {
    const int half = head_dim / 2;
    const size_t row_size = static_cast<size_t>(num_heads) * static_cast<size_t>(head_dim);
    EPMOE_ASSERT(inv_freq.size() == static_cast<size_t>(half) && x.size() == static_cast<size_t>(n) * row_size);
    std::vector<float> cos_j(static_cast<size_t>(half)), sin_j(static_cast<size_t>(half));  // [half]
    for (int64_t t = 0; t < n; ++t) {
        // freqs = position * inv_freq in float32; emb = cat(freqs, freqs), so both halves share cos_j/sin_j.
        const float position = static_cast<float>(first_position + t);
        for (int j = 0; j < half; ++j) {
            const double angle = static_cast<double>(position * inv_freq[static_cast<size_t>(j)]);
            cos_j[static_cast<size_t>(j)] = static_cast<float>(std::cos(angle));
            sin_j[static_cast<size_t>(j)] = static_cast<float>(std::sin(angle));
        }
        float* row = x.data() + static_cast<size_t>(t) * row_size;
        for (int h = 0; h < num_heads; ++h) {
            float* lo = row + static_cast<size_t>(h) * static_cast<size_t>(head_dim);  // x[:half]
            float* hi = lo + half;                                                     // x[half:]
            for (int j = 0; j < half; ++j) {
                const float a = lo[j], b = hi[j], c = cos_j[static_cast<size_t>(j)], s = sin_j[static_cast<size_t>(j)];
                lo[j] = a * c + (-b) * s;  // rotate_half's first half is -x[half:]
                hi[j] = b * c + a * s;     // ... and its second half x[:half]
            }
        }
    }
}

}  // namespace epmoe
