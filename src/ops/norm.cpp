// RMSNorm forward and backward (norm.hpp), each row in double.
#include "epmoe/ops/norm.hpp"

#include <cmath>
#include <vector>

#include "epmoe/base/error.hpp"

namespace epmoe {

// sum of x[i]^2 in double over 8 fixed lanes (the same bits whatever vector width the clone runs; one chain of
// dependent adds made the gradient norm about 4 % of a training step, and RMSNorm's mean most of the gate phase).
__attribute__((target_clones("avx512f", "avx2", "default"))) double sum_of_squares(const float* x, size_t n) {
    constexpr size_t kLanes = 8;
    const size_t body = n / kLanes * kLanes;
    double lane[kLanes] = {};
    for (size_t i = 0; i < body; i += kLanes)
        for (size_t l = 0; l < kLanes; ++l) lane[l] += static_cast<double>(x[i + l]) * x[i + l];
    double sum = 0;
    for (size_t l = 0; l < kLanes; ++l) sum += lane[l];
    for (size_t i = body; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
    return sum;
}

namespace {

// out[j] = float(x[j] * inv) * g[j]: what the HF norms do after the mean (inv in double here).
__attribute__((target_clones("avx512f", "avx2", "default"))) void scale_row(const float* __restrict x,
                                                                            const float* __restrict g, double inv,
                                                                            size_t d, float* __restrict out) {
    for (size_t j = 0; j < d; ++j) out[j] = static_cast<float>(x[j] * inv) * g[j];
}

}  // namespace

void rms_norm(std::span<const float> x, std::span<const float> g, double eps, std::span<float> out) {
    const size_t d = g.size();
    EPMOE_ASSERT(d > 0 && x.size() % d == 0 && out.size() == x.size());
    for (size_t row = 0; row < x.size(); row += d) {
        const double sum_sq = sum_of_squares(&x[row], d);
        const double inv = 1.0 / std::sqrt(sum_sq / static_cast<double>(d) + eps);
        scale_row(&x[row], g.data(), inv, d, &out[row]);
    }
}

void rms_norm_backward(std::span<const float> x, std::span<const float> g, double eps, std::span<const float> dout,
                       std::span<float> dx, std::span<float> dg) {
    const size_t d = g.size();
    EPMOE_ASSERT(d > 0 && x.size() % d == 0 && dout.size() == x.size() && dx.size() == x.size() &&
                 (dg.empty() || dg.size() == d));
    std::vector<double> dg_sum(dg.empty() ? 0 : d);  // [d_model]: this call's dg, added to dg once at the end
    for (size_t row = 0; row < x.size(); row += d) {
        const double sum_sq = sum_of_squares(&x[row], d);  // as the forward summed it
        double dot = 0;                                    // sum g dout x over the row
        for (size_t j = 0; j < d; ++j) dot += static_cast<double>(g[j]) * dout[row + j] * x[row + j];
        const double r = 1.0 / std::sqrt(sum_sq / static_cast<double>(d) + eps);
        const double c = r * r * r * dot / static_cast<double>(d);  // the term through r's dependence on x
        for (size_t j = 0; j < d; ++j) {
            dx[row + j] += static_cast<float>(r * g[j] * dout[row + j] - c * x[row + j]);
            if (!dg.empty()) dg_sum[j] += static_cast<double>(dout[row + j]) * x[row + j] * r;
        }
    }
    for (size_t j = 0; j < dg_sum.size(); ++j) dg[j] += static_cast<float>(dg_sum[j]);
}

}  // namespace epmoe
