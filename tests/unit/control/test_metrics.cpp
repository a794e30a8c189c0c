// Load statistics (src/control/metrics.cpp): max/mean, coefficient of variation, Gini, quantiles like numpy,
// normalised entropy and balancedness.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "epmoe/control/metrics.hpp"

namespace epmoe {
namespace {

TEST(Metrics, LoadStatistics) {
    std::vector<double> even = {2, 2, 2, 2}, skew = {0, 0, 0, 8};
    EXPECT_DOUBLE_EQ(max_over_mean(even), 1.0);
    EXPECT_DOUBLE_EQ(max_over_mean(skew), 4.0);
    EXPECT_DOUBLE_EQ(coefficient_of_variation(even), 0.0);
    EXPECT_NEAR(coefficient_of_variation(skew), std::sqrt(3.0), 1e-12);  // sd 2*sqrt(3), mean 2
    EXPECT_DOUBLE_EQ(gini(even), 0.0);
    EXPECT_DOUBLE_EQ(gini(skew), 0.75);  // (n-1)/n for one holder of everything
    EXPECT_DOUBLE_EQ(gini(std::vector<double>{1, 3}), 0.25);
    EXPECT_DOUBLE_EQ(max_over_mean(std::vector<double>{0, 0}), 0.0);
}

TEST(Metrics, QuantileInterpolatesLikeNumpy) {
    std::vector<double> x = {4, 1, 3, 2};
    EXPECT_DOUBLE_EQ(quantile(x, 0.5), 2.5);
    EXPECT_DOUBLE_EQ(quantile(x, 0.99), 3.97);  // numpy.quantile([1,2,3,4], 0.99)
    EXPECT_DOUBLE_EQ(quantile(x, 1.0), 4.0);
    EXPECT_DOUBLE_EQ(quantile({7.0}, 0.99), 7.0);
}

TEST(Metrics, EntropyAndBalancedness) {
    EXPECT_DOUBLE_EQ(normalized_entropy(std::vector<double>{1, 1, 1, 1}), 1.0);
    EXPECT_DOUBLE_EQ(normalized_entropy(std::vector<double>{4, 0, 0, 0}), 0.0);
    EXPECT_NEAR(normalized_entropy(std::vector<double>{1, 1, 0, 0}), 0.5, 1e-12);
    EXPECT_NEAR(balancedness(std::vector<double>{2, 1, 1}), 2.0 / 3, 1e-12);
    EXPECT_DOUBLE_EQ(balancedness(std::vector<double>{0, 0}), 1.0);
}

}  // namespace
}  // namespace epmoe
