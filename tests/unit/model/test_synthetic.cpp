// The synthetic model and workload (src/model/synthetic.cpp): weights independent of ownership, tokens a
// function of (seed, step, global index), skew and drift of the token clusters.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "epmoe/model/synthetic.hpp"

namespace epmoe {
namespace {

TEST(Synthetic, ModelIsTheSameWhateverTheOwnership) {
    ModelShape s;
    s.num_layers = 2, s.d_model = 8, s.d_ff = 12, s.num_experts = 4, s.top_k = 2;
    Model all = make_synthetic_model(s, 5, [](int, int) { return true; });
    Model some = make_synthetic_model(s, 5, [](int, int e) { return e == 3; });
    Model other_seed = make_synthetic_model(s, 6, [](int, int) { return true; });
    EXPECT_EQ(some.layers[1].experts.size(), 1u);
    EXPECT_EQ(some.layers[1].experts.at(3).w13, all.layers[1].experts.at(3).w13);
    EXPECT_EQ(some.layers[1].gate, all.layers[1].gate);
    EXPECT_NE(other_seed.layers[1].gate, all.layers[1].gate);
    EXPECT_NE(all.layers[0].experts.at(0).w2, all.layers[0].experts.at(1).w2);
}

TEST(Synthetic, TokenDependsOnlyOnSeedStepAndGlobalIndex) {
    WorkloadConfig w;
    w.skew = 1.0, w.num_clusters = 4, w.noise = 0.3;
    SyntheticWorkload work(w, 6, 9);
    std::vector<float> whole(10 * 6), part(4 * 6), next_step(10 * 6);
    work.fill(2, 0, 10, whole);
    work.fill(2, 5, 4, part);
    work.fill(3, 0, 10, next_step);
    EXPECT_TRUE(std::equal(part.begin(), part.end(), whole.begin() + 5 * 6));
    EXPECT_NE(whole, next_step);
}

TEST(Synthetic, SkewConcentratesTokensAndZeroSkewDoesNot) {
    WorkloadConfig w;
    w.num_clusters = 8, w.noise = 0.1;
    auto share_of_top = [&](double skew) {
        w.skew = skew;
        SyntheticWorkload work(w, 4, 1);
        std::vector<int> counts(8, 0);
        for (int t = 0; t < 8000; ++t) ++counts[work.cluster_of(0, t)];
        return *std::max_element(counts.begin(), counts.end()) / 8000.0;
    };
    EXPECT_NEAR(share_of_top(0.0), 1.0 / 8, 0.02);
    EXPECT_GT(share_of_top(1.5), 0.35);  // 1 / sum_r r^-1.5 over 8 clusters = 0.47
}

TEST(Synthetic, DriftMovesThePopularCluster) {
    WorkloadConfig w;
    w.num_clusters = 8, w.noise = 0.1, w.skew = 2.0, w.drift = 1.0;
    SyntheticWorkload work(w, 4, 1);
    auto top = [&](int step) {
        std::vector<int> counts(8, 0);
        for (int t = 0; t < 2000; ++t) ++counts[work.cluster_of(step, t)];
        return std::max_element(counts.begin(), counts.end()) - counts.begin();
    };
    EXPECT_EQ(top(0), 0);
    EXPECT_EQ(top(3), 3);
}

}  // namespace
}  // namespace epmoe
