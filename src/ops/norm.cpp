// RMSNorm forward and backward (norm.hpp), each row in double.
#include "epmoe/ops/norm.hpp"

#include <cmath>
#include <vector>

#include "epmoe/base/error.hpp"

namespace epmoe {

void rms_norm(std::span<const float> x, std::span<const float> g, double eps, std::span<float> out) {
    const size_t d = g.size();
    EPMOE_ASSERT(d > 0 && x.size() % d == 0 && out.size() == x.size());
    for (size_t row = 0; row < x.size(); row += d) {
        double sum_sq = 0;
        for (size_t j = 0; j < d; ++j) sum_sq += static_cast<double>(x[row + j]) * x[row + j];
        const double inv = 1.0 / std::sqrt(sum_sq / static_cast<double>(d) + eps);
        for (size_t j = 0; j < d; ++j) out[row + j] = static_cast<float>(x[row + j] * inv) * g[j];
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
