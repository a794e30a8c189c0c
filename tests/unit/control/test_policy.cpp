// Each routing policy's update rule on a hand-made history of coordinator observations.
#include <gtest/gtest.h>

#include <cmath>

#include "epmoe/base/config.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/control/policy.hpp"

namespace epmoe {
namespace {

Config config_with(const std::vector<std::string>& sets) {
    Json j = default_config();
    for (const auto& s : sets) apply_set(j, s);
    return Config::from_json(j);
}

// Two ranks; experts 0, 1 on rank 0 and 2, 3 on rank 1.
PolicyContext context(int num_layers = 2, int num_experts = 4) {
    PolicyContext c;
    c.num_layers = num_layers;
    c.num_experts = num_experts;
    c.num_ranks = 2;
    for (int e = 0; e < num_experts; ++e) c.owners.push_back({e * 2 / num_experts});
    c.seed = 9;
    return c;
}

StepObservation observe(std::vector<int64_t> load, int num_layers = 2, int round = 0) {
    StepObservation obs;
    obs.num_layers = num_layers;
    obs.num_experts = static_cast<int>(load.size()) / num_layers;
    obs.expert_load = std::move(load);
    obs.round = round;
    return obs;
}

std::unique_ptr<Policy> make(const std::string& name, const std::vector<std::string>& sets = {}) {
    std::vector<std::string> all = {"policy.name=" + name};
    all.insert(all.end(), sets.begin(), sets.end());
    const Config config = config_with(all);
    PolicyContext c = context();
    c.power_budget_w = config.energy.power_budget_w;  // as the run passes them (app/run_placement.cpp)
    c.thermal_limit_c = config.energy.thermal_limit_c;
    return make_policy(config.policy, c);
}

TEST(Policy, RegistryKnowsEveryPolicyOfTheContract) {
    std::vector<std::string> want = {"none",   "aux_free", "prev_batch",  "energy", "round_robin",
                                     "random", "balanced", "temperature", "ttt"};
    EXPECT_EQ(policy_names(), want);
    for (const auto& name : want) EXPECT_STREQ(make(name)->name(), name.c_str());
}

TEST(Policy, NoneLeavesBiasesAlone) {
    std::vector<float> b(8, 0.25f);
    make("none")->update(observe({9, 1, 1, 1, 3, 3, 3, 3}), b);
    for (float x : b) EXPECT_EQ(x, 0.25f);
}

// b += u * sign(mean - load): layer 0 mean 6, layer 1 all equal (sign 0).
TEST(Policy, AuxFreeSignStep) {
    auto p = make("aux_free", {"policy.aux_free.u=0.001"});
    std::vector<float> b(8, 0.0f);
    StepObservation obs = observe({10, 2, 6, 6, 5, 5, 5, 5});
    p->update(obs, b);
    p->update(obs, b);  // integrates
    const float want[] = {-0.002f, 0.002f, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(b[i], want[i]) << i;
    EXPECT_DOUBLE_EQ(config_with({}).policy.aux_free.u, 0.01);  // the documented default
}

// EMA of load fractions, acting only above the threshold: b += gain * (1/E - p).
TEST(Policy, PrevBatchEmaAndThreshold) {
    auto p = make("prev_batch",
                  {"policy.prev_batch.alpha=0.5", "policy.prev_batch.gain=0.5", "policy.prev_batch.threshold=1.05"});
    std::vector<float> b(8, 0.0f);
    p->update(observe({6, 2, 0, 0, 5, 5, 5, 5}), b);  // p = [.75 .25 0 0]; layer 1 even: no action
    const double first[] = {0.5 * (0.25 - 0.75), 0, 0.5 * 0.25, 0.5 * 0.25};
    for (int e = 0; e < 4; ++e) EXPECT_NEAR(b[e], first[e], 1e-7) << e;
    for (int e = 4; e < 8; ++e) EXPECT_EQ(b[e], 0.0f);
    p->update(observe({2, 2, 2, 2, 5, 5, 5, 5}), b);  // p = 0.5 [.25 ...] + 0.5 [.75 .25 0 0] = [.5 .25 .125 .125]
    const double ema[] = {0.5, 0.25, 0.125, 0.125};
    for (int e = 0; e < 4; ++e) EXPECT_NEAR(b[e], first[e] + 0.5 * (0.25 - ema[e]), 1e-7) << e;
    // Below the threshold nothing moves: a history close to even (max/mean of p = 1.04).
    auto quiet = make("prev_batch", {"policy.prev_batch.threshold=1.05"});
    std::vector<float> c(8, 0.0f);
    quiet->update(observe({104, 100, 98, 98, 1, 1, 1, 1}), c);
    for (float x : c) EXPECT_EQ(x, 0.0f);
}

// Joules per row: rank 0 spends 0.04 J/row, rank 1 0.02 (mean 0.03): pressure 1/3 on rank 0's experts.
TEST(Policy, EnergyShiftsAwayFromCostlyRanks) {
    auto p = make("energy", {"policy.energy.u=0.1"});
    StepObservation obs = observe({5, 5, 5, 5, 5, 5, 5, 5});
    obs.rank_joules = {4, 2};
    obs.rank_rows = {100, 100};
    obs.rank_power_w = {NAN, NAN};
    obs.rank_temp_c = {NAN, NAN};
    std::vector<float> b(8, 0.0f);
    p->update(obs, b);
    const double d = 0.1 * (1.0 / 3 - 1.0 / 6);  // u * (pressure - mean pressure)
    for (int l = 0; l < 2; ++l) {
        EXPECT_NEAR(b[l * 4 + 0], -d, 1e-7);
        EXPECT_NEAR(b[l * 4 + 1], -d, 1e-7);
        EXPECT_NEAR(b[l * 4 + 2], d, 1e-7);
        EXPECT_NEAR(b[l * 4 + 3], d, 1e-7);
    }
}

TEST(Policy, EnergyUsesPowerBudgetAndThermalLimitThenRelaxes) {
    auto p = make("energy", {"policy.energy.u=0.1", "policy.energy.relax=0.5", "energy.power_budget_w=100",
                             "energy.thermal_limit_c=80"});
    StepObservation obs = observe({5, 5, 5, 5, 5, 5, 5, 5});
    obs.rank_power_w = {90, 150};  // rank 1 is 50 % over budget
    obs.rank_temp_c = {88, 60};    // rank 0 is 10 % over the limit
    std::vector<float> b(8, 0.0f);
    p->update(obs, b);
    const double mean = (0.1 + 0.5) / 2;
    EXPECT_NEAR(b[0], -0.1 * (0.1 - mean), 1e-7);
    EXPECT_NEAR(b[2], -0.1 * (0.5 - mean), 1e-7);
    std::vector<float> before = b;
    obs.rank_power_w = {90, 90};
    obs.rank_temp_c = {70, 70};
    p->update(obs, b);  // nobody under pressure: b *= 1 - relax
    for (int i = 0; i < 8; ++i) EXPECT_NEAR(b[i], before[i] * 0.5, 1e-7);
}

TEST(Policy, RoundRobinRotates) {
    auto p = make("round_robin", {"policy.round_robin.strength=0.2"});
    std::vector<float> b(8, 0.7f);
    p->update(observe({1, 1, 1, 1, 1, 1, 1, 1}, 2, 3), b);  // round 3: layer 0 expert 3, layer 1 expert 0
    const float want[] = {0, 0, 0, 0.2f, 0.2f, 0, 0, 0};
    for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(b[i], want[i]) << i;
}

TEST(Policy, RandomIsBoundedAndReproducible) {
    auto p = make("random", {"policy.random.strength=0.1"}), q = make("random", {"policy.random.strength=0.1"});
    std::vector<float> a(8), b(8), c(8);
    p->update(observe({1, 1, 1, 1, 1, 1, 1, 1}, 2, 4), a);
    q->update(observe({9, 9, 1, 1, 1, 1, 1, 1}, 2, 4), b);  // loads do not matter
    q->update(observe({1, 1, 1, 1, 1, 1, 1, 1}, 2, 5), c);
    for (int i = 0; i < 8; ++i) {
        EXPECT_EQ(a[i], b[i]);
        EXPECT_LE(std::abs(a[i]), 0.1f);
    }
    EXPECT_NE(a, c);
}

TEST(Policy, BalancedIsProportionalAndClamped) {
    auto p = make("balanced", {"policy.balanced.strength=0.3"});
    std::vector<float> b(8, 0.5f);
    p->update(observe({12, 4, 4, 4, 0, 0, 0, 0}), b);  // mean 6; an all-zero layer gets 0
    EXPECT_FLOAT_EQ(b[0], -0.3f);                      // -0.3 * (2 - 1)
    EXPECT_FLOAT_EQ(b[1], 0.1f);                       // -0.3 * (2/3 - 1)
    for (int e = 4; e < 8; ++e) EXPECT_EQ(b[e], 0.0f);
}

TEST(Policy, TemperatureIsLogarithmic) {
    auto p = make("temperature", {"policy.temperature.t=0.2"});
    std::vector<float> b(8, 0.0f);
    p->update(observe({15, 3, 3, 3, 1, 1, 1, 1}), b);  // mean 6
    EXPECT_NEAR(b[0], -0.2 * std::log(16.0 / 7), 1e-6);
    EXPECT_NEAR(b[1], -0.2 * std::log(4.0 / 7), 1e-6);
    EXPECT_NEAR(b[4], 0.0, 1e-7);
}

TEST(Policy, ParametersAreValidated) {
    EXPECT_THROW(config_with({"policy.prev_batch.alpha=0"}), Error);
    EXPECT_THROW(config_with({"policy.prev_batch.threshold=0.9"}), Error);
    EXPECT_THROW(config_with({"policy.aux_free.u=-1"}), Error);
    EXPECT_THROW(config_with({"policy.energy.relax=2"}), Error);
    EXPECT_THROW(make("aux_freee"), Error);  // names are the registry's: checked where policies are made
    EXPECT_NO_THROW(config_with({"policy.name=aux_free", "placement.name=replicated", "placement.replicas=3"}));
}

}  // namespace
}  // namespace epmoe
