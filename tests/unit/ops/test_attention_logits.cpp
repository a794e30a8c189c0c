// What the whole-model commands do with logits (src/ops/logits.cpp): token_nll against the double formula,
// argmax's ties and NaN, and sample_top_p's distribution (temperature, HF's top-p cut) by counting draws.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "epmoe/base/error.hpp"
#include "epmoe/ops/attention.hpp"

namespace epmoe::attention_logits_test {

// Draws `draws` tokens and counts each: [vocab].
std::vector<int> count_draws(const std::vector<float>& logits, double temperature, double top_p, int draws,
                             uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<int> counts(logits.size(), 0);
    for (int i = 0; i < draws; ++i) ++counts.at(static_cast<size_t>(sample_top_p(logits, temperature, top_p, rng)));
    return counts;
}

// Pearson's chi-square of counts against probabilities p (tokens of p = 0 must have no draws).
double chi_square(const std::vector<int>& counts, const std::vector<double>& p, int draws) {
    double chi = 0;
    for (size_t i = 0; i < p.size(); ++i) {
        if (p[i] == 0) {
            EXPECT_EQ(counts[i], 0) << "token " << i << " is excluded but was drawn";
            continue;
        }
        const double expected = p[i] * draws;
        chi += (counts[i] - expected) * (counts[i] - expected) / expected;
    }
    return chi;
}

// softmax(logits / temperature) in double.
std::vector<double> softmax(const std::vector<float>& logits, double temperature) {
    std::vector<double> p(logits.size());
    double sum = 0;
    for (size_t i = 0; i < p.size(); ++i) sum += p[i] = std::exp(logits[i] / temperature);
    for (double& x : p) x /= sum;
    return p;
}

TEST(Logits, TokenNllIsLogSumExpMinusTarget) {
    const std::vector<float> logits = {1.5f, -2.0f, 0.25f, 3.0f, -7.5f};
    for (int32_t t = 0; t < 5; ++t) {
        double sum = 0;
        for (const float l : logits) sum += std::exp(static_cast<double>(l));
        EXPECT_NEAR(token_nll(logits, t), std::log(sum) - logits[t], 1e-12);
    }
    // Shifted by 1000: exp would overflow without the maximum subtracted; the NLL is unchanged.
    std::vector<float> shifted = logits;
    for (float& l : shifted) l += 1000.0f;
    EXPECT_NEAR(token_nll(shifted, 3), token_nll(logits, 3), 1e-4);
    EXPECT_NEAR(token_nll(std::vector<float>(8, 0.5f), 2), std::log(8.0), 1e-12);  // uniform: log(vocab)
}

TEST(Logits, ArgmaxTakesTheFirstMaximum) {
    EXPECT_EQ(argmax(std::vector<float>{1, 3, 2, 3, 3}), 1);
    EXPECT_EQ(argmax(std::vector<float>{-1, -5}), 0);
    EXPECT_EQ(argmax(std::vector<float>{-std::numeric_limits<float>::infinity(), -1e30f}), 1);
    EXPECT_EQ(argmax(std::vector<float>{2, std::numeric_limits<float>::infinity(), 7}), 1);
}

TEST(Logits, ArgmaxRefusesNaN) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    EXPECT_THROW(argmax(std::vector<float>{1, nan, 2}), Error);
    EXPECT_THROW(argmax(std::vector<float>{5, 1, nan}), Error);  // also after the maximum
    EXPECT_THROW(argmax(std::vector<float>{}), Error);
}

TEST(Logits, TinyTopPIsArgmax) {
    // Only the most probable token survives top_p -> 0, whatever the temperature.
    std::mt19937_64 gen(1);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    for (int trial = 0; trial < 50; ++trial) {
        std::vector<float> logits(37);
        for (float& l : logits) l = normal(gen);
        std::mt19937_64 rng(static_cast<uint64_t>(trial));
        for (const double temperature : {0.3, 1.0, 5.0})
            EXPECT_EQ(sample_top_p(logits, temperature, 1e-9, rng), argmax(logits));
    }
}

TEST(Logits, TopPOneDrawsTheSoftmax) {
    const std::vector<float> logits = {0.5f, -1.0f, 1.2f, 0.0f, -0.3f, 2.0f};  // unsorted on purpose
    const int draws = 60000;
    for (const double temperature : {1.0, 0.5, 2.0}) {
        const std::vector<int> counts = count_draws(logits, temperature, 1.0, draws, 2);
        // 5 degrees of freedom: P(chi^2 > 30) < 2e-5.
        EXPECT_LT(chi_square(counts, softmax(logits, temperature), draws), 30.0) << "temperature " << temperature;
    }
}

TEST(Logits, TopPDropsTheTailAndRenormalises) {
    // Probabilities 0.5, 0.3, 0.15, 0.05 (in scrambled order). HF sorts ascending: cumulative 0.05, 0.2, 0.5, 1;
    // top_p = 0.75 drops cumulative <= 0.25, i.e. the 0.05 and 0.15 tokens; 0.5 : 0.3 renormalised.
    const std::vector<float> logits = {std::log(0.15f), std::log(0.5f), std::log(0.05f), std::log(0.3f)};
    const int draws = 40000;
    const std::vector<int> counts = count_draws(logits, 1.0, 0.75, draws, 3);
    EXPECT_LT(chi_square(counts, {0.0, 0.625, 0.0, 0.375}, draws), 20.0);  // 1 dof: P(> 20) < 1e-5
    // top_p = 0.9 keeps the 0.15 token too (its cumulative 0.2 > 0.1), never the 0.05 one.
    const std::vector<int> wider = count_draws(logits, 1.0, 0.9, draws, 4);
    EXPECT_LT(chi_square(wider, {0.15 / 0.95, 0.5 / 0.95, 0.0, 0.3 / 0.95}, draws), 25.0);  // 2 dof
}

TEST(Logits, TopPSetBeyondTheFirstSortedBlockFollowsHfRule) {
    // 3000 tokens, token i less probable than i - 1 (e^-0.001 i): top_p = 0.8 keeps ~1400, more than the 1024
    // that sample_top_p sorts first. The set by HF's rule, brute force: ascending, cumulative <= 1 - top_p goes.
    const int vocab = 3000;
    const double top_p = 0.8;
    std::vector<float> logits(vocab);
    for (int i = 0; i < vocab; ++i) logits[i] = -0.001f * static_cast<float>(i);
    const std::vector<double> p = softmax(logits, 1.0);
    double cumulative = 0;  // ascending order is token vocab - 1 down to 0
    int kept = vocab;       // tokens 0 .. kept - 1 stay
    for (int i = vocab - 1; i > 0 && (cumulative += p[i]) <= 1 - top_p; --i) kept = i;
    ASSERT_GT(kept, 1024);
    ASSERT_LT(kept, 2000);
    const std::vector<int> counts = count_draws(logits, 1.0, top_p, 4000, 7);
    int last_drawn = 0;
    for (int i = 0; i < vocab; ++i)
        if (counts[i] > 0) last_drawn = i;
    EXPECT_LT(last_drawn, kept);        // nothing outside the set
    EXPECT_GT(last_drawn, kept - 100);  // and its least probable tokens are drawn (miss chance ~1e-300)
}

TEST(Logits, SamplingNeverDrawsImpossibleTokens) {
    const float inf = std::numeric_limits<float>::infinity();
    const std::vector<float> logits = {-inf, 0.0f, -inf, 0.0f, -inf};
    const std::vector<int> counts = count_draws(logits, 1.0, 1.0, 4000, 5);
    EXPECT_EQ(counts[0] + counts[2] + counts[4], 0);
    EXPECT_GT(counts[1], 1700);
    EXPECT_GT(counts[3], 1700);
}

TEST(Logits, SamplingRefusesBadInput) {
    std::mt19937_64 rng(6);
    const std::vector<float> logits = {1, 2};
    EXPECT_THROW(sample_top_p(logits, 0.0, 0.9, rng), Error);
    EXPECT_THROW(sample_top_p(logits, 1.0, 0.0, rng), Error);
    EXPECT_THROW(sample_top_p(logits, 1.0, 1.5, rng), Error);
    EXPECT_THROW(sample_top_p(std::vector<float>{1, std::numeric_limits<float>::quiet_NaN()}, 1.0, 0.9, rng), Error);
}

}  // namespace epmoe::attention_logits_test
