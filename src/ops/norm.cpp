#include "epmoe/ops/norm.hpp"

#include <cmath>

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

}  // namespace epmoe
