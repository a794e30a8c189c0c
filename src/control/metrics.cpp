#include "epmoe/control/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "epmoe/base/error.hpp"

namespace epmoe {

double max_over_mean(std::span<const double> x) {
    EPMOE_ASSERT(!x.empty());
    double mean = std::accumulate(x.begin(), x.end(), 0.0) / static_cast<double>(x.size());
    return mean > 0 ? *std::max_element(x.begin(), x.end()) / mean : 0.0;
}

double coefficient_of_variation(std::span<const double> x) {
    EPMOE_ASSERT(!x.empty());
    double mean = std::accumulate(x.begin(), x.end(), 0.0) / static_cast<double>(x.size());
    if (mean <= 0) return 0.0;
    double var = 0;
    for (double v : x) var += (v - mean) * (v - mean);
    return std::sqrt(var / static_cast<double>(x.size())) / mean;
}

double gini(std::span<const double> x) {
    EPMOE_ASSERT(!x.empty());
    std::vector<double> s(x.begin(), x.end());
    std::sort(s.begin(), s.end());
    double total = std::accumulate(s.begin(), s.end(), 0.0);
    if (total <= 0) return 0.0;
    // G = sum_i (2i - n - 1) x_(i) / (n * sum x), i = 1..n over the sorted values.
    double weighted = 0;
    const double n = static_cast<double>(s.size());
    for (size_t i = 0; i < s.size(); ++i) weighted += (2.0 * (i + 1) - n - 1.0) * s[i];
    return weighted / (n * total);
}

double normalized_entropy(std::span<const double> x) {
    EPMOE_ASSERT(!x.empty());
    double total = std::accumulate(x.begin(), x.end(), 0.0);
    if (x.size() == 1 || total <= 0) return 1.0;
    double h = 0;
    for (double v : x)
        if (v > 0) h -= v / total * std::log(v / total);
    return h / std::log(static_cast<double>(x.size()));
}

double balancedness(std::span<const double> x) {
    double mom = max_over_mean(x);
    return mom > 0 ? 1.0 / mom : 1.0;
}

double quantile(std::vector<double> x, double q) {
    EPMOE_ASSERT(!x.empty() && q >= 0 && q <= 1);
    std::sort(x.begin(), x.end());
    double pos = q * static_cast<double>(x.size() - 1);
    size_t lo = static_cast<size_t>(std::floor(pos));
    size_t hi = std::min(lo + 1, x.size() - 1);
    return x[lo] + (pos - static_cast<double>(lo)) * (x[hi] - x[lo]);
}

std::vector<double> to_double(std::span<const int64_t> x) { return std::vector<double>(x.begin(), x.end()); }

}  // namespace epmoe
