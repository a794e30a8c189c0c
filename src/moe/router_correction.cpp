#include "epmoe/moe/router_correction.hpp"

#include <algorithm>

#include "epmoe/base/error.hpp"

namespace epmoe {

bool RouterCorrection::is_zero() const {
    auto zero = [](float v) { return v == 0.0f; };
    return std::all_of(b.begin(), b.end(), zero) && std::all_of(bias.begin(), bias.end(), zero);
}

namespace {

// sum_i x[i] w[i] in double, over 8 partial sums and then the tail: a fixed order, and each product exact in
// double, so every ISA's clone gives the same bits.
__attribute__((target_clones("avx512f", "avx2", "default"))) double dot(const float* x, const float* w, int n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(x[i + k]) * w[i + k];
    double sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; ++i) sum += static_cast<double>(x[i]) * w[i];
    return sum;
}

}  // namespace

void RouterCorrection::project(std::span<const float> x, std::vector<double>& u) const {
    const size_t n = x.size() / d_model, r = static_cast<size_t>(rank);
    u.resize(n * r);
    for (size_t t = 0; t < n; ++t)
        for (size_t j = 0; j < r; ++j) u[t * r + j] = dot(&x[t * d_model], &a[j * d_model], d_model);
}

void RouterCorrection::apply(std::span<const float> x, std::span<float> logits) const {
    EPMOE_ASSERT(x.size() / d_model == logits.size() / num_experts);
    if (is_zero()) return;
    std::vector<double> u;
    project(x, u);
    const size_t n = logits.size() / num_experts;
    for (size_t t = 0; t < n; ++t)
        for (int e = 0; e < num_experts; ++e) {
            double z = static_cast<double>(logits[t * num_experts + e]) + bias[e];
            for (int j = 0; j < rank; ++j) z += u[t * rank + j] * b[static_cast<size_t>(j) * num_experts + e];
            logits[t * num_experts + e] = static_cast<float>(z);
        }
}

void RouterAdaptation::keep(int l, std::span<const float> x, std::span<const float> z, int64_t first_token) {
    if (!capture) return;
    const RouterCorrection& c = layers[static_cast<size_t>(l)];
    Rows& rows = captured[static_cast<size_t>(l)];
    const size_t n = x.size() / c.d_model;
    EPMOE_ASSERT(learn.empty() || learn.size() == n);
    for (size_t t = 0; t < n; ++t) {
        if ((first_token + static_cast<int64_t>(t)) % sample_every != 0 || (!learn.empty() && !learn[t])) continue;
        rows.x.insert(rows.x.end(), x.begin() + t * c.d_model, x.begin() + (t + 1) * c.d_model);
        rows.z.insert(rows.z.end(), z.begin() + t * c.num_experts, z.begin() + (t + 1) * c.num_experts);
    }
}

void RouterAdaptation::clear_captured() {
    for (Rows& r : captured) r.x.clear(), r.z.clear();
}

}  // namespace epmoe
