// Router (src/moe/router.cpp) against plain loops written here: softmax/sigmoid top-k, bias, ties. RMSNorm and
// the gate logits are tested in tests/unit/ops/.
#include <gtest/gtest.h>

#include <cmath>

#include "epmoe/model/synthetic.hpp"
#include "epmoe/moe/router.hpp"

namespace epmoe {
namespace {

std::vector<float> random_vector(size_t n, uint64_t seed, float scale = 1.0f) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = scale * (2.0f * hash_uniform(seed, 99, i, 0) - 1.0f);
    return v;
}

TEST(Router, SoftmaxTopKRenormalised) {
    std::vector<float> logits = {1.0f, 3.0f, 2.0f, 0.5f};
    Routing r = route(logits, 4, 2, {}, GateKind::kSoftmax, true);
    ASSERT_EQ(r.expert_ids, (std::vector<int32_t>{1, 2}));
    double p1 = std::exp(3.0), p2 = std::exp(2.0);
    EXPECT_NEAR(r.weights[0], p1 / (p1 + p2), 1e-7);
    EXPECT_NEAR(r.weights[1], p2 / (p1 + p2), 1e-7);
}

TEST(Router, SelectLogitsChooseAndLogitsWeigh) {  // --policy ttt: z' selects, z weighs
    std::vector<float> logits = {1.0f, 3.0f, 2.0f, 0.5f}, select = {4.0f, 3.0f, 2.0f, 0.5f};
    Routing r = route(logits, 4, 2, {}, GateKind::kSoftmax, true, select);
    ASSERT_EQ(r.expert_ids, (std::vector<int32_t>{0, 1}));
    double p0 = std::exp(1.0), p1 = std::exp(3.0);
    EXPECT_NEAR(r.weights[0], p0 / (p0 + p1), 1e-7);
    EXPECT_NEAR(r.weights[1], p1 / (p0 + p1), 1e-7);
    const Routing same = route(logits, 4, 2, {}, GateKind::kSoftmax, true, logits),
                  plain = route(logits, 4, 2, {}, GateKind::kSoftmax, true);
    EXPECT_EQ(same.expert_ids, plain.expert_ids);
    EXPECT_EQ(same.weights, plain.weights);
}

TEST(Router, SoftmaxTopKWithoutRenormalisationKeepsProbabilities) {
    std::vector<float> logits = {1.0f, 3.0f, 2.0f, 0.5f};
    Routing r = route(logits, 4, 2, {}, GateKind::kSoftmax, false);
    double z = std::exp(1.0) + std::exp(3.0) + std::exp(2.0) + std::exp(0.5);
    EXPECT_NEAR(r.weights[0], std::exp(3.0) / z, 1e-7);
    EXPECT_NEAR(r.weights[1], std::exp(2.0) / z, 1e-7);
}

TEST(Router, SigmoidScoresEachExpert) {
    std::vector<float> logits = {-1.0f, 0.5f, 2.0f};
    Routing r = route(logits, 3, 2, {}, GateKind::kSigmoid, false);
    ASSERT_EQ(r.expert_ids, (std::vector<int32_t>{2, 1}));
    EXPECT_NEAR(r.weights[0], 1.0 / (1.0 + std::exp(-2.0)), 1e-7);
    EXPECT_NEAR(r.weights[1], 1.0 / (1.0 + std::exp(-0.5)), 1e-7);
    Routing n = route(logits, 3, 2, {}, GateKind::kSigmoid, true);
    EXPECT_NEAR(n.weights[0] + n.weights[1], 1.0, 1e-7);
}

TEST(Router, BiasSelectsButWeightsStayUnbiased) {
    std::vector<float> logits = {2.0f, 1.0f, 0.0f};
    std::vector<float> bias = {0.0f, 0.0f, 0.2f};  // probs .665 .245 .090: lifts 2 above 1, not above 0
    Routing r = route(logits, 3, 2, bias, GateKind::kSoftmax, false);
    ASSERT_EQ(r.expert_ids, (std::vector<int32_t>{0, 2}));
    double z = std::exp(2.0) + std::exp(1.0) + 1.0;
    EXPECT_NEAR(r.weights[1], 1.0 / z, 1e-7);  // expert 2's unbiased probability
}

TEST(Router, TiesGoToTheLowerIndex) {
    std::vector<float> logits = {0.5f, 1.0f, 1.0f, 1.0f, 0.2f};
    Routing r = route(logits, 5, 2, {}, GateKind::kSoftmax, true);
    EXPECT_EQ(r.expert_ids, (std::vector<int32_t>{1, 2}));
    Routing all = route(std::vector<float>(6, 0.0f), 6, 3, {}, GateKind::kSigmoid, true);
    EXPECT_EQ(all.expert_ids, (std::vector<int32_t>{0, 1, 2}));
    for (float w : all.weights) EXPECT_NEAR(w, 1.0 / 3.0, 1e-7);
}

TEST(Router, TopKEqualsNumExperts) {
    std::vector<float> logits = random_vector(8, 5);
    Routing r = route(logits, 8, 8, {}, GateKind::kSoftmax, false);
    double sum = 0;
    for (float w : r.weights) sum += w;
    EXPECT_NEAR(sum, 1.0, 1e-6);
    for (int i = 1; i < 8; ++i) EXPECT_GE(r.weights[i - 1], r.weights[i]);
}

}  // namespace
}  // namespace epmoe
