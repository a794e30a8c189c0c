// Policies in a closed loop with the real router on a drifting workload, placements from a load profile,
// the exact changed-assignment count and the new imbalance metrics.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "epmoe/base/error.hpp"
#include "epmoe/moe/fidelity.hpp"
#include "epmoe/control/metrics.hpp"
#include "epmoe/moe/placement.hpp"
#include "epmoe/control/policy.hpp"
#include "epmoe/moe/router.hpp"
#include "epmoe/model/synthetic.hpp"

namespace epmoe {
namespace {

constexpr int kExperts = 8, kTopK = 2, kTokens = 512, kSteps = 60, kDriftStep = 30;
constexpr float kHotBoost = 1.0f;  // logit added to the hot pair: about 2.2x their fair share unbiased

// Logits of one step: noise plus kHotBoost on a hot pair of experts, {0, 1} before the drift and {5, 6} after.
std::vector<float> step_logits(int step) {
    std::vector<float> z(static_cast<size_t>(kTokens) * kExperts);
    const int hot = step < kDriftStep ? 0 : 5;
    for (int t = 0; t < kTokens; ++t)
        for (int e = 0; e < kExperts; ++e)
            z[t * kExperts + e] = 2.0f * hash_uniform(3, step, t, e) + ((e == hot || e == hot + 1) ? kHotBoost : 0.0f);
    return z;
}

// Runs `policy` in the loop (one coordinator round per step, one layer); returns each step's expert max/mean.
std::vector<double> closed_loop(const std::string& policy) {
    Json j = default_config();
    apply_set(j, "policy.name=" + policy);
    PolicyContext context{1, kExperts, 1, {}, 0};
    for (int e = 0; e < kExperts; ++e) context.owners.push_back({0});
    auto p = make_policy(Config::from_json(j), context);
    std::vector<float> bias(kExperts, 0.0f);
    std::vector<double> imbalance;
    for (int step = 0; step < kSteps; ++step) {
        Routing r = route(step_logits(step), kExperts, kTopK, bias, GateKind::kSoftmax, true);
        StepObservation obs;
        obs.step = obs.round = step;
        obs.num_layers = 1;
        obs.num_experts = kExperts;
        obs.expert_load.assign(kExperts, 0);
        for (int32_t e : r.expert_ids) ++obs.expert_load[e];
        imbalance.push_back(max_over_mean(to_double(obs.expert_load)));
        p->update(obs, bias);
    }
    return imbalance;
}

TEST(PolicyDrift, PrevBatchTracksADriftWhereNoneStaysHigh) {
    std::vector<double> none = closed_loop("none"), prev = closed_loop("prev_batch");
    // Just after the drift both are imbalanced (the policy's biases point at the old hot pair).
    EXPECT_GT(none[kDriftStep], 1.5);
    EXPECT_GT(prev[kDriftStep], 1.5);
    // Before the drift and at the end, prev_batch has brought it down; none has not.
    EXPECT_LT(prev[kDriftStep - 1], 1.25) << "before the drift";
    EXPECT_LT(prev[kSteps - 1], 1.25) << "after the drift";
    EXPECT_GT(none[kSteps - 1], 1.5);
    std::printf("expert max/mean at steps %d, %d, %d: none %.2f %.2f %.2f, prev_batch %.2f %.2f %.2f\n",
                kDriftStep - 1, kDriftStep, kSteps - 1, none[kDriftStep - 1], none[kDriftStep], none[kSteps - 1],
                prev[kDriftStep - 1], prev[kDriftStep], prev[kSteps - 1]);
}

TEST(PolicyDrift, AuxFreeConvergesWithItsDefaultStep) {
    std::vector<double> aux = closed_loop("aux_free");
    EXPECT_LT(aux[kDriftStep - 1], 1.25);
    EXPECT_LT(aux[kSteps - 1], 1.25);
}

TEST(Fidelity, CountChangedComparesSetsNotOrder) {
    Routing biased, unbiased;
    biased.top_k = unbiased.top_k = 2;
    biased.expert_ids = {0, 1, 2, 3, 5, 6};
    unbiased.expert_ids = {1, 0, 2, 4, 5, 6};
    FidelityCounts c;
    count_changed(biased, unbiased, c);
    EXPECT_EQ(c.changed_slots, 1);
    EXPECT_EQ(c.slots, 6);
    EXPECT_EQ(c.changed_tokens, 1);
    EXPECT_EQ(c.tokens, 3);
}

TEST(Metrics, EntropyAndBalancedness) {
    EXPECT_DOUBLE_EQ(normalized_entropy(std::vector<double>{1, 1, 1, 1}), 1.0);
    EXPECT_DOUBLE_EQ(normalized_entropy(std::vector<double>{4, 0, 0, 0}), 0.0);
    EXPECT_NEAR(normalized_entropy(std::vector<double>{1, 1, 0, 0}), 0.5, 1e-12);
    EXPECT_NEAR(balancedness(std::vector<double>{2, 1, 1}), 2.0 / 3, 1e-12);
    EXPECT_DOUBLE_EQ(balancedness(std::vector<double>{0, 0}), 1.0);
}

TEST(Placement, BalancedIsGreedyWithACap) {
    std::vector<double> profile = {100, 1, 1, 1, 50, 1, 1, 1};
    Placement p = Placement::make("balanced", 8, 2, profile);
    EXPECT_EQ(p.experts_of(0), (std::vector<int>{0, 5, 6, 7}));
    EXPECT_EQ(p.experts_of(1), (std::vector<int>{1, 2, 3, 4}));
}

TEST(Placement, ReplicatedCopiesTheHottestToTheLeastLoaded) {
    std::vector<double> profile = {100, 10, 10, 10, 10, 10, 10, 40};
    Placement p = Placement::make("replicated", 8, 4, profile, 2);
    EXPECT_EQ(p.owners()[0], (std::vector<int>{0, 1}));  // ranks 1 and 2 tie at 20: the lower wins
    EXPECT_EQ(p.owners()[7], (std::vector<int>{3, 2}));  // then rank 2 (20) is the least loaded
    for (int e = 1; e < 7; ++e) EXPECT_EQ(p.owners()[e].size(), 1u);
    EXPECT_EQ(p.rank_for(0, 10), 0);
    EXPECT_EQ(p.rank_for(0, 11), 1);
    EXPECT_TRUE(p.owns(1, 0) && p.owns(0, 0) && !p.owns(2, 0));
}

TEST(Placement, ProfileIsRequiredAndReadFromMetrics) {
    EXPECT_THROW(Placement::make("balanced", 8, 2), Error);
    EXPECT_THROW(Placement::make("replicated", 8, 2), Error);
    auto dir = std::filesystem::temp_directory_path() / "epmoe_profile_test";
    std::filesystem::create_directories(dir);
    try {
        read_load_profile(dir.string() + "/missing", 4);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("missing/metrics.jsonl"), std::string::npos) << e.what();
    }
    std::ofstream(dir / "metrics.jsonl") << R"({"layers": [{"expert_load": [1, 2, 3, 4]}, {"expert_load": [1, 0, 0, 0]}]})"
                                         << "\n" << R"({"layers": [{"expert_load": [0, 0, 0, 10]}]})" << "\n";
    EXPECT_EQ(read_load_profile(dir.string(), 4), (std::vector<double>{2, 2, 3, 14}));
    EXPECT_THROW(read_load_profile(dir.string(), 5), Error);
    std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace epmoe
