// --policy ttt's pure parts: the router correction (moe/router_correction) against a plain loop, the rows it keeps,
// the objective's value against a plain double loop and its gradient against central finite differences, and the
// budget's shrink.
#include <gtest/gtest.h>

#include <cmath>

#include "epmoe/control/ttt.hpp"
#include "epmoe/model/synthetic.hpp"

namespace epmoe::ttt_test {

constexpr int kD = 7, kE = 5, kR = 3, kN = 6;

// Values on a grid of 2^-12 (so that +-2^-8 steps stay exact in float), in [-scale, scale].
std::vector<float> grid_values(size_t n, uint64_t seed, float scale) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i)
        v[i] = std::round(scale * (2.0f * hash_uniform(seed, 5, i, 0) - 1.0f) * 4096.0f) / 4096.0f;
    return v;
}

RouterCorrection correction(uint64_t seed) {
    return {kD,
            kE,
            kR,
            grid_values(kR * kD, seed, 0.5f),
            grid_values(kR * kE, seed + 1, 0.5f),
            grid_values(kE, seed + 2, 0.3f)};
}

// z' = z + (x A) B + b by a plain loop in double.
double corrected(const RouterCorrection& c, const std::vector<float>& x, const std::vector<float>& z, int t, int e) {
    double out = static_cast<double>(z[t * kE + e]) + c.bias[e];
    for (int j = 0; j < kR; ++j) {
        double u = 0;
        for (int i = 0; i < kD; ++i) u += static_cast<double>(x[t * kD + i]) * c.a[j * kD + i];
        out += u * c.b[j * kE + e];
    }
    return out;
}

// The weighted objective summed over rows, by a plain loop: sum_t <p_t, wb g_b + we g_e> + wf KL(p0_t || p_t).
double objective(const RouterCorrection& c, const std::vector<float>& x, const std::vector<float>& z,
                 const std::vector<double>& gb, const std::vector<double>& ge, double wb, double we, double wf) {
    double total = 0;
    for (int t = 0; t < kN; ++t) {
        double zp[kE], sum = 0, sum0 = 0;
        for (int e = 0; e < kE; ++e)
            zp[e] = corrected(c, x, z, t, e), sum += std::exp(zp[e]),
            sum0 += std::exp(static_cast<double>(z[t * kE + e]));
        for (int e = 0; e < kE; ++e) {
            const double p = std::exp(zp[e]) / sum, p0 = std::exp(static_cast<double>(z[t * kE + e])) / sum0;
            total += p * (wb * gb[e] + we * ge[e]) + wf * p0 * std::log(p0 / p);
        }
    }
    return total;
}

TEST(RouterCorrection, ApplyMatchesPlainLoopAndZeroLeavesLogitsAlone) {
    const RouterCorrection c = correction(3);
    const std::vector<float> x = grid_values(kN * kD, 11, 2.0f), z = grid_values(kN * kE, 12, 3.0f);
    std::vector<float> out = z;
    c.apply(x, out);
    for (int t = 0; t < kN; ++t)
        for (int e = 0; e < kE; ++e) EXPECT_NEAR(out[t * kE + e], corrected(c, x, z, t, e), 1e-5);
    RouterCorrection zero = c;
    std::fill(zero.b.begin(), zero.b.end(), 0.0f);
    std::fill(zero.bias.begin(), zero.bias.end(), 0.0f);
    ASSERT_TRUE(zero.is_zero());
    out = z;
    zero.apply(x, out);
    EXPECT_EQ(out, z);  // bit for bit: the checkpoint's router
}

TEST(RouterCorrection, KeepsSampledRowsOutsideTheHeldOutMask) {
    RouterAdaptation a;
    a.layers = {correction(1)};
    a.captured.resize(1);
    a.sample_every = 2;
    a.learn = {1, 1, 1, 0, 1, 1};
    const std::vector<float> x = grid_values(kN * kD, 1, 1.0f), z = grid_values(kN * kE, 2, 1.0f);
    a.keep(0, x, z, 3);  // global tokens 3..8: 4, 6 (row 3 is held out), 8
    ASSERT_EQ(a.captured[0].z.size(), 2u * kE);
    EXPECT_EQ(a.captured[0].x[0], x[1 * kD]);
    EXPECT_EQ(a.captured[0].z[kE], z[5 * kE]);
    a.capture = false;
    a.keep(0, x, z, 3);
    EXPECT_EQ(a.captured[0].z.size(), 2u * kE);
    a.clear_captured();
    EXPECT_TRUE(a.captured[0].x.empty());
}

TEST(Ttt, ObjectiveMatchesPlainLoop) {
    const RouterCorrection c = correction(5);
    const std::vector<float> x = grid_values(kN * kD, 21, 2.0f), z = grid_values(kN * kE, 22, 3.0f);
    const std::vector<double> gb = {1.2, 0.4, 0.9, 1.0, 0.5}, ge = {0.8, 1.3, 1.0, 0.9, 1.0};
    TttSums sums;
    ttt_layer_sums(c, x, z, gb, ge, 1.0, 1.0, 1.0, sums);
    EXPECT_NEAR(sums.balance, objective(c, x, z, gb, ge, 1, 0, 0), 1e-9);
    EXPECT_NEAR(sums.energy, objective(c, x, z, gb, ge, 0, 1, 0), 1e-9);
    EXPECT_NEAR(sums.fidelity, objective(c, x, z, gb, ge, 0, 0, 1), 1e-9);
    EXPECT_GT(sums.fidelity, 0);
}

TEST(Ttt, GradientMatchesFiniteDifferences) {
    const RouterCorrection c = correction(7);
    const std::vector<float> x = grid_values(kN * kD, 31, 2.0f), z = grid_values(kN * kE, 32, 3.0f);
    const std::vector<double> gb = {1.2, 0.4, 0.9, 1.0, 0.5}, ge = {0.8, 1.3, 1.0, 0.9, 1.0};
    const double wb = 2.0, we = 0.5, wf = 1.5, h = 1.0 / 256;
    TttSums sums;
    ttt_layer_sums(c, x, z, gb, ge, wb, we, wf, sums);
    ASSERT_EQ(sums.grad.size(), static_cast<size_t>(kR * kD + kR * kE + kE));
    for (size_t i = 0; i < sums.grad.size(); ++i) {
        RouterCorrection plus = c, minus = c;
        auto param = [&](RouterCorrection& k) -> float& {
            return i < c.a.size()                ? k.a[i]
                   : i < c.a.size() + c.b.size() ? k.b[i - c.a.size()]
                                                 : k.bias[i - c.a.size() - c.b.size()];
        };
        param(plus) += static_cast<float>(h);
        param(minus) -= static_cast<float>(h);
        const double fd =
            (objective(plus, x, z, gb, ge, wb, we, wf) - objective(minus, x, z, gb, ge, wb, we, wf)) / (2 * h);
        EXPECT_NEAR(sums.grad[i], fd, 1e-4 * (1 + std::abs(fd))) << "parameter " << i;
    }
}

PolicyConfig::Ttt ttt_config() {
    PolicyConfig::Ttt t;
    t.rank = kR, t.lr = 0.01, t.iters = 1, t.balance = 1, t.energy = 0, t.fidelity = 1, t.max_delta_ppl = 0.01;
    t.check_every = 1, t.holdout_windows = 1, t.sample_every = 1;
    return t;
}

TEST(Ttt, StartsAtZeroAndABudgetBreachShrinksTheCorrection) {
    ModelShape shape;
    shape.num_layers = 2, shape.d_model = kD, shape.num_experts = kE, shape.top_k = 2;
    TestTimeRouter ttt(ttt_config(), shape, {1, 1}, Placement::make("contiguous", kE, 1), 3, "estimated");
    for (const RouterCorrection& c : ttt.adaptation().layers) {
        EXPECT_TRUE(c.is_zero());
        EXPECT_TRUE(std::any_of(c.a.begin(), c.a.end(), [](float v) { return v != 0; }));  // A drawn: B gets gradients
    }
    RouterCorrection& c = ttt.adaptation().layers[0];
    c.b = grid_values(c.b.size(), 4, 1.0f);
    const std::vector<float> b = c.b;
    EXPECT_EQ(ttt.check(0, 10.05, 10.0, 0.1), 1.0);  // +0.5 %: inside 1 %
    EXPECT_EQ(c.b, b);
    const double factor = ttt.check(1, 10.2, 10.0, 0.1);  // +2 %: over, shrinks to 1 % / 2 % of itself
    EXPECT_NEAR(factor, 0.5, 1e-12);
    for (size_t i = 0; i < b.size(); ++i) EXPECT_NEAR(c.b[i], 0.5f * b[i], 1e-6);
    EXPECT_EQ(ttt.check(2, 20.0, 10.0, 0.1), 0.25);  // +100 %: the floor
    const Json s = ttt.summary();
    EXPECT_EQ(s["shrinks"], 2);
    EXPECT_EQ(s["fidelity_weight_final"], 4.0);
    EXPECT_EQ(s["checks"].size(), 3u);
    EXPECT_EQ(s["checks"][1]["shrunk"], true);
}

}  // namespace epmoe::ttt_test
