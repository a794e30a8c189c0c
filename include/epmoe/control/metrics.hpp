// Statistics of load and time. Pure compute.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace epmoe {

// max(x) / mean(x); 1 when every value is equal; 0 for an all-zero input.
double max_over_mean(std::span<const double> x);
// Coefficient of variation: population standard deviation / mean (0 for an all-zero input).
double coefficient_of_variation(std::span<const double> x);
// Gini coefficient in [0, 1): 0 = perfectly even load.
double gini(std::span<const double> x);
// Shannon entropy of x / sum(x), divided by ln(n): 1 = perfectly even, 0 = all on one; 1 for n = 1 or all-zero.
double normalized_entropy(std::span<const double> x);
// mean(x) / max(x) (balancedness, as expert-parallel load balancers report it); 1 = even, 1 for all-zero.
double balancedness(std::span<const double> x);
// The q-quantile (0..1) with linear interpolation between order statistics (numpy's default).
double quantile(std::vector<double> x, double q);
// Converts counts to doubles.
std::vector<double> to_double(std::span<const int64_t> x);

}  // namespace epmoe
