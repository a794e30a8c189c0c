// The optimizer (src/train/optim.cpp) without MPI: AdamW against a double-precision transcription of torch 1.13's
// _single_tensor_adamw over several steps, and against torch itself (tests/fixtures/optim/adamw.json, written by
// make_adamw.py beside it: torch.optim.AdamW and clip_grad_norm_ on three tensors over six steps); the norm's
// share and clipping; the learning-rate schedule's values; the weight-decay rule; bad hyper-parameters.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <numbers>
#include <vector>

#include "epmoe/base/error.hpp"
#include "epmoe/base/json.hpp"
#include "epmoe/model/synthetic.hpp"
#include "epmoe/train/optim.hpp"

namespace epmoe {
namespace {

// The tensors of a test: values and gradients the registry points into.
struct OptimTensors {
    std::vector<std::vector<float>> values, grads;
    ParamRegistry registry;

    void add(std::vector<float> init) {
        values.push_back(std::move(init));
        grads.emplace_back(values.back().size(), 0.0f);
    }
    // Registers every tensor (after the last add: the vectors no longer move).
    void register_all(const std::vector<bool>& decay) {
        for (size_t i = 0; i < values.size(); ++i)
            registry.add(
                Param{.name = "t" + std::to_string(i), .value = values[i], .grad = grads[i], .decay = decay[i]});
    }
};

double max_abs(const std::vector<double>& x) {
    double m = 0;
    for (double v : x) m = std::max(m, std::abs(v));
    return m;
}

// torch 1.13 _single_tensor_adamw, transcribed in double for one tensor.
struct AdamWReference {
    std::vector<double> p, m, v;
    void step(const std::vector<double>& g, int t, double lr, double wd, const AdamWConfig& c) {
        for (size_t j = 0; j < p.size(); ++j) {
            p[j] *= 1 - lr * wd;
            m[j] = c.beta1 * m[j] + (1 - c.beta1) * g[j];
            v[j] = c.beta2 * v[j] + (1 - c.beta2) * g[j] * g[j];
            const double bc1 = 1 - std::pow(c.beta1, t), bc2 = 1 - std::pow(c.beta2, t);
            p[j] -= lr / bc1 * m[j] / (std::sqrt(v[j]) / std::sqrt(bc2) + c.eps);
        }
    }
};

TEST(AdamW, MatchesDoubleTranscriptionOverSteps) {
    const AdamWConfig config(0.9, 0.95, 1e-8, 0.1);
    const std::vector<int> sizes = {37, 5, 128};
    const std::vector<bool> decay = {true, false, true};
    OptimTensors t;
    std::vector<AdamWReference> ref(sizes.size());
    for (size_t i = 0; i < sizes.size(); ++i) {
        std::vector<float> init(sizes[i]);
        for (int j = 0; j < sizes[i]; ++j) init[j] = 2 * hash_uniform(7, i, j, 0) - 1;
        ref[i].p.assign(init.begin(), init.end());
        ref[i].m.assign(init.size(), 0);
        ref[i].v.assign(init.size(), 0);
        t.add(std::move(init));
    }
    t.register_all(decay);
    AdamW adamw(t.registry, config);
    const double lrs[] = {1e-3, 1e-2, 3e-2, 1e-2, 5e-3, 1e-3, 0.0, 2e-3};
    for (int s = 0; s < 8; ++s) {
        for (size_t i = 0; i < sizes.size(); ++i) {
            std::vector<double> g(sizes[i]);
            // Gradients of mixed scales and signs, a zero now and then.
            for (int j = 0; j < sizes[i]; ++j)
                g[j] = j % 11 == 3 ? 0.0 : (hash_uniform(8, s, i, j) - 0.5) * std::pow(10.0, (j % 5) - 3);
            for (int j = 0; j < sizes[i]; ++j) t.grads[i][j] = static_cast<float>(g[j]);
            for (int j = 0; j < sizes[i]; ++j) g[j] = t.grads[i][j];  // the reference sees the same floats
            ref[i].step(g, s + 1, lrs[s], decay[i] ? config.weight_decay : 0.0, config);
        }
        adamw.step(t.registry, lrs[s]);
        for (size_t i = 0; i < sizes.size(); ++i) {
            // Moments may cancel to near 0: their error is measured against the tensor's largest.
            const double m_scale = max_abs(ref[i].m), v_scale = max_abs(ref[i].v);
            for (int j = 0; j < sizes[i]; ++j) {
                ASSERT_NEAR(t.values[i][j], ref[i].p[j], 1e-6 * (1 + std::abs(ref[i].p[j]))) << s << " " << i;
                ASSERT_NEAR(adamw.exp_avg(i)[j], ref[i].m[j], 1e-6 * m_scale) << s << " " << i;
                ASSERT_NEAR(adamw.exp_avg_sq(i)[j], ref[i].v[j], 1e-6 * v_scale) << s << " " << i;
            }
        }
    }
    EXPECT_EQ(adamw.steps(), 8);
}

TEST(AdamW, FirstStepMovesEachElementByLr) {
    // Step 1 without decay: m_hat = g, v_hat = g^2, so p moves by lr * g / (|g| + eps): lr * sign(g).
    std::vector<float> value = {1.0f, -2.0f, 3.0f}, grad = {0.5f, -4.0f, 1e-3f};
    ParamRegistry registry;
    registry.add(Param{.name = "x", .value = value, .grad = grad, .decay = false});
    AdamW adamw(registry, AdamWConfig());
    adamw.step(registry, 0.1);
    EXPECT_NEAR(value[0], 0.9f, 1e-6);
    EXPECT_NEAR(value[1], -1.9f, 1e-6);
    EXPECT_NEAR(value[2], 2.9f, 1e-5);
}

TEST(AdamW, MatchesTorchFixture) {
    std::ifstream in(std::string(EPMOE_FIXTURES) + "/optim/adamw.json");
    ASSERT_TRUE(in) << "tests/fixtures/optim/adamw.json";
    const Json fx = Json::parse(in);
    OptimTensors t;
    std::vector<bool> decay;
    for (const Json& p : fx["params"]) {
        std::vector<float> init;
        for (double x : p["init"]) init.push_back(static_cast<float>(x));
        decay.push_back(p["decay"].get<bool>());
        t.add(std::move(init));
    }
    t.register_all(decay);
    AdamW adamw(t.registry, AdamWConfig(fx["beta1"], fx["beta2"], fx["eps"], fx["weight_decay"]));
    int s = 0;
    for (const Json& step : fx["steps"]) {
        for (size_t i = 0; i < t.grads.size(); ++i)
            for (size_t j = 0; j < t.grads[i].size(); ++j) t.grads[i][j] = static_cast<float>(step["grads"][i][j]);
        const double norm = std::sqrt(grad_sq_share(t.registry));
        EXPECT_NEAR(norm, step["norm"].get<double>(), 1e-6 * norm) << "step " << s;
        clip_gradients(t.registry, norm, fx["max_norm"]);
        adamw.step(t.registry, step["lr"]);
        for (size_t i = 0; i < t.values.size(); ++i) {
            const std::vector<double> m = step["exp_avg"][i], v = step["exp_avg_sq"][i];
            for (size_t j = 0; j < t.values[i].size(); ++j) {
                const double want = step["after"][i][j];
                ASSERT_NEAR(t.values[i][j], want, 4e-7 * (1 + std::abs(want))) << "step " << s << " tensor " << i;
                ASSERT_NEAR(adamw.exp_avg(i)[j], m[j], 1e-6 * max_abs(m)) << "step " << s << " tensor " << i;
                ASSERT_NEAR(adamw.exp_avg_sq(i)[j], v[j], 1e-6 * max_abs(v)) << "step " << s << " tensor " << i;
            }
        }
        ++s;
    }
    EXPECT_EQ(s, 6);
}

TEST(AdamW, RejectsBadSettings) {
    EXPECT_THROW(AdamWConfig(1.0, 0.9, 1e-8, 0), Error);
    EXPECT_THROW(AdamWConfig(0.9, -0.1, 1e-8, 0), Error);
    EXPECT_THROW(AdamWConfig(0.9, 0.9, 0, 0), Error);
    EXPECT_THROW(AdamWConfig(0.9, 0.9, 1e-8, NAN), Error);
    std::vector<float> value(2), grad(2);
    ParamRegistry registry;
    registry.add(Param{.name = "x", .value = value, .grad = grad});
    AdamW adamw(registry, AdamWConfig());
    EXPECT_THROW(adamw.step(registry, NAN), Error);
    EXPECT_THROW(adamw.step(registry, INFINITY), Error);
    EXPECT_THROW(adamw.step(registry, -1e-3), Error);
    EXPECT_EQ(adamw.steps(), 0);
}

TEST(Clip, ScalesOnlyAboveMaxNorm) {
    std::vector<float> a = {3.0f, 0.0f}, ga = {3.0f, 0.0f}, b = {0.0f}, gb = {4.0f};  // norm 5
    ParamRegistry registry;
    registry.add(Param{.name = "a", .value = a, .grad = ga});
    registry.add(Param{.name = "b", .value = b, .grad = gb});
    EXPECT_DOUBLE_EQ(std::sqrt(grad_sq_share(registry)), 5.0);
    clip_gradients(registry, 5.0, 10.0);  // coef ~2: nothing changes
    EXPECT_EQ(ga[0], 3.0f);
    EXPECT_EQ(gb[0], 4.0f);
    clip_gradients(registry, 5.0, 5.0);  // coef = 5 / (5 + 1e-6) < 1: scaled, as torch does
    EXPECT_EQ(ga[0], 3.0f * static_cast<float>(5.0 / (5.0 + 1e-6)));
    EXPECT_LT(ga[0], 3.0f);
    clip_gradients(registry, 5.0, 1.0);
    EXPECT_NEAR(std::sqrt(grad_sq_share(registry)), 1.0, 1e-6);
    clip_gradients(registry, NAN, 1.0);  // a non-finite norm scales nothing
    EXPECT_NEAR(std::sqrt(grad_sq_share(registry)), 1.0, 1e-6);
    EXPECT_THROW(clip_gradients(registry, 1.0, 0.0), Error);
    registry.zero_grad();
    EXPECT_EQ(grad_sq_share(registry), 0.0);
    EXPECT_EQ(registry.numel(), 3u);
}

TEST(LrSchedule, WarmupCosineFloor) {
    const LrSchedule s(1e-3, 1e-4, 10, 110);
    EXPECT_DOUBLE_EQ(s.at(0), 1e-3 * 1 / 11);
    EXPECT_DOUBLE_EQ(s.at(9), 1e-3 * 10 / 11);
    EXPECT_DOUBLE_EQ(s.at(10), 1e-3);                                                        // cos(0): the top
    EXPECT_DOUBLE_EQ(s.at(60), 1e-4 + 0.5 * (1 + std::cos(std::numbers::pi * 0.5)) * 9e-4);  // halfway
    EXPECT_NEAR(s.at(60), 5.5e-4, 1e-15);
    EXPECT_DOUBLE_EQ(s.at(35), 1e-4 + 0.5 * (1 + std::cos(std::numbers::pi * 0.25)) * 9e-4);
    EXPECT_DOUBLE_EQ(s.at(110), 1e-4);
    EXPECT_DOUBLE_EQ(s.at(1000), 1e-4);
    for (int64_t i = 11; i < 110; ++i) EXPECT_LT(s.at(i), s.at(i - 1)) << i;  // strictly decreasing
    const LrSchedule constant(3e-4, 3e-4, 0, 0);
    EXPECT_DOUBLE_EQ(constant.at(0), 3e-4);
    EXPECT_DOUBLE_EQ(constant.at(7), 3e-4);
    const LrSchedule warm_only(1.0, 0.0, 4, 4);  // warmup, then straight to the floor
    EXPECT_DOUBLE_EQ(warm_only.at(3), 0.8);
    EXPECT_DOUBLE_EQ(warm_only.at(4), 0.0);
    EXPECT_THROW(LrSchedule(NAN, 0, 0, 1), Error);
    EXPECT_THROW(LrSchedule(1e-3, 2e-3, 0, 1), Error);
    EXPECT_THROW(LrSchedule(1e-3, 0, 5, 4), Error);
    EXPECT_THROW(LrSchedule(1e-3, 0, -1, 4), Error);
}

TEST(WeightDecay, OffForNormsBiasesAndRouterWhenAsked) {
    EXPECT_TRUE(weight_decay_applies(ParamKind::kWeight, false));
    EXPECT_FALSE(weight_decay_applies(ParamKind::kNorm, true));
    EXPECT_FALSE(weight_decay_applies(ParamKind::kBias, true));
    EXPECT_TRUE(weight_decay_applies(ParamKind::kRouter, true));
    EXPECT_FALSE(weight_decay_applies(ParamKind::kRouter, false));
}

}  // namespace
}  // namespace epmoe
