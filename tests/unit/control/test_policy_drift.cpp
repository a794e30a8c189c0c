// Policies in a closed loop with the real router on a drifting workload: prev_batch tracks a drift, aux_free
// converges.
#include <gtest/gtest.h>

#include <cmath>

#include "epmoe/control/metrics.hpp"
#include "epmoe/control/policy.hpp"
#include "epmoe/model/synthetic.hpp"
#include "epmoe/moe/router.hpp"

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
    auto p = make_policy(Config::from_json(j).policy, context);
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
    std::printf("expert max/mean at steps %d, %d, %d: none %.2f %.2f %.2f, prev_batch %.2f %.2f %.2f\n", kDriftStep - 1,
                kDriftStep, kSteps - 1, none[kDriftStep - 1], none[kDriftStep], none[kSteps - 1], prev[kDriftStep - 1],
                prev[kDriftStep], prev[kSteps - 1]);
}

TEST(PolicyDrift, AuxFreeConvergesWithItsDefaultStep) {
    std::vector<double> aux = closed_loop("aux_free");
    EXPECT_LT(aux[kDriftStep - 1], 1.25);
    EXPECT_LT(aux[kSteps - 1], 1.25);
}

}  // namespace
}  // namespace epmoe
