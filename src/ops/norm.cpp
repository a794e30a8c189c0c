// RMSNorm forward and backward (norm.hpp), each row in double.
#include "epmoe/ops/norm.hpp"

#include <cmath>
#include <cstring>
#include <vector>

#include "epmoe/base/error.hpp"

namespace epmoe {

namespace {

typedef double Lanes __attribute__((vector_size(8 * sizeof(double))));
typedef float Floats __attribute__((vector_size(8 * sizeof(float))));

// sum_j x[j]^2 in double: element j into lane j mod 8, the lanes summed in a fixed tree, then the tail. A
// square of a float is exact in double, so every clone gives the same bits.
__attribute__((target_clones("avx512f", "avx2", "default"))) double sum_of_squares(const float* __restrict x,
                                                                                   size_t d) {
    Lanes acc = {};
    const size_t body = d / 8 * 8;
    for (size_t j = 0; j < body; j += 8) {
        Floats f;
        std::memcpy(&f, x + j, sizeof(Floats));
        const Lanes v = __builtin_convertvector(f, Lanes);
        acc += v * v;
    }
    double sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (size_t j = body; j < d; ++j) sum += static_cast<double>(x[j]) * x[j];
    return sum;
}

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
        double sum_sq = 0, dot = 0;  // sum x^2 and sum g dout x over the row
        for (size_t j = 0; j < d; ++j) {
            sum_sq += static_cast<double>(x[row + j]) * x[row + j];
            dot += static_cast<double>(g[j]) * dout[row + j] * x[row + j];
        }
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
