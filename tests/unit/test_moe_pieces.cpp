// Capacity, placement, row layout and combining, load statistics and the synthetic model/workload.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <numeric>

#include "epmoe/moe/dispatch.hpp"
#include "epmoe/control/metrics.hpp"
#include "epmoe/moe/placement.hpp"
#include "epmoe/model/synthetic.hpp"

namespace epmoe {
namespace {

TEST(Capacity, FormulaIsCeilOfFactorTimesTokensTimesKOverE) {
    EXPECT_EQ(expert_capacity(1.0, 10, 2, 8), 3);    // ceil(2.5)
    EXPECT_EQ(expert_capacity(1.25, 16, 2, 8), 5);   // exactly 5
    EXPECT_EQ(expert_capacity(0.01, 10, 1, 8), 1);   // ceil of a small positive number
    EXPECT_EQ(expert_capacity(0.0, 10, 2, 8), INT64_MAX);
}

TEST(Capacity, DropsInGlobalTokenOrder) {
    // Tokens (top-2) on a rank whose lower ranks already sent 1 assignment to expert 0 and 0 to expert 1.
    std::vector<int32_t> ids = {0, 1, 0, 1, 1, 0, 2, 0};
    std::vector<int64_t> before = {1, 0, 0};
    std::vector<uint8_t> kept(ids.size());
    apply_capacity(ids, 3, before, 2, kept);
    // expert 0: positions 1, 2 (dropped), 3 (dropped), 4 (dropped); expert 1: 0, 1, 2 (dropped); expert 2: 0.
    EXPECT_EQ(kept, (std::vector<uint8_t>{1, 1, 0, 1, 0, 0, 1, 0}));
}

TEST(Placement, ContiguousCoversEveryExpertOnce) {
    for (int e : {1, 2, 3, 7, 8, 64})
        for (int p : {1, 2, 3, 4, 5}) {
            Placement pl = Placement::make("contiguous", e, p);
            int owned = 0;
            for (int r = 0; r < p; ++r) owned += static_cast<int>(pl.experts_of(r).size());
            EXPECT_EQ(owned, e);
            for (int x = 1; x < e; ++x) EXPECT_LE(pl.rank_for(x - 1, 0), pl.rank_for(x, 0));  // blocks in order
        }
    Placement pl = Placement::make("contiguous", 8, 3);
    EXPECT_EQ(pl.experts_of(0), (std::vector<int>{0, 1, 2}));
    EXPECT_EQ(pl.experts_of(2), (std::vector<int>{6, 7}));
    EXPECT_TRUE(Placement::make("contiguous", 2, 4).experts_of(1).empty());  // P > E: some ranks own none
}

TEST(Placement, RoundRobinAndUnknown) {
    Placement pl = Placement::make("round_robin", 5, 2);
    EXPECT_EQ(pl.experts_of(0), (std::vector<int>{0, 2, 4}));
    EXPECT_THROW(Placement::make("diagonal", 4, 2), Error);
}

// Slots number every copy once, rank by rank, each rank's experts ascending (the order assign_rows sends in).
TEST(Placement, SlotsAreRankMajorExpertAscending) {
    const std::vector<double> profile = {9, 1, 1, 8, 1, 1, 7, 1};
    for (const char* name : {"contiguous", "round_robin", "balanced", "replicated"})
        for (int p : {1, 2, 3, 4, 5}) {
            Placement pl = Placement::make(name, 8, p, profile, 3);
            std::vector<int> seen(pl.num_slots(), 0);
            int copies = 0;
            for (int e = 0; e < 8; ++e) copies += static_cast<int>(pl.owners()[e].size());
            EXPECT_EQ(pl.num_slots(), copies) << name << " " << p;
            EXPECT_EQ(pl.first_slot(0), 0);
            for (int r = 0; r < p; ++r) {
                std::vector<int> mine = pl.experts_of(r);
                ASSERT_EQ(pl.first_slot(r + 1) - pl.first_slot(r), static_cast<int>(mine.size())) << name << " " << p;
                for (size_t i = 0; i < mine.size(); ++i) {
                    EXPECT_EQ(pl.slot(r, mine[i]), pl.first_slot(r) + static_cast<int>(i)) << name << " " << p;
                    ++seen[pl.slot(r, mine[i])];
                    if (i > 0) EXPECT_LT(mine[i - 1], mine[i]);
                }
            }
            for (int c : seen) EXPECT_EQ(c, 1) << name << " " << p;
        }
}

// Rows are laid out by (chunk, rank, expert, token); a rank's rows for its own experts stay out of send
// (own_token names them), and with each row's result in place (identity experts here) combine gives the same
// output bit for bit with and without own rows.
TEST(AssignRows, OwnRowsStayOutOfSendAndCombineIsUnchanged) {
    const int d = 3, k = 2, num_experts = 8, num_ranks = 3;
    Routing routing;
    routing.top_k = k;
    const int64_t n = 11;
    std::vector<float> x(n * d);
    for (size_t i = 0; i < x.size(); ++i) x[i] = 0.25f * static_cast<float>(i) - 3.0f;
    for (int64_t t = 0; t < n; ++t) {
        routing.expert_ids.push_back(static_cast<int32_t>((3 * t) % num_experts));
        routing.expert_ids.push_back(static_cast<int32_t>((3 * t + 5) % num_experts));
        routing.weights.push_back(0.75f);
        routing.weights.push_back(0.25f);
    }
    std::vector<uint8_t> kept(n * k, 1);
    kept[3] = 0;  // one dropped slot
    const Placement placement = Placement::make("contiguous", num_experts, num_ranks);
    auto identity_results = [&](DispatchBuffers& buf) {
        for (auto [rows, tokens] : {std::pair{&buf.send, &buf.send_token}, std::pair{&buf.own, &buf.own_token}}) {
            ASSERT_EQ(tokens->size() * d, rows->size());
            for (size_t r = 0; r < tokens->size(); ++r) std::copy_n(&x[(*tokens)[r] * d], d, &(*rows)[r * d]);
        }
    };
    for (int chunks : {1, 2, 4}) {
        DispatchBuffers all;
        const std::vector<int> counts = assign_rows(placement, routing, kept, d, 0, all, chunks);
        EXPECT_TRUE(all.own_token.empty());
        // Send rows in (chunk, slot) blocks, tokens ascending within a block.
        std::vector<std::pair<int, int64_t>> order;  // (block, token) of each send row
        for (int64_t t = 0; t < n; ++t)
            for (int i = 0; i < k; ++i)
                if (kept[t * k + i]) {
                    const int e = routing.expert_ids[t * k + i];
                    order.emplace_back(static_cast<int>(t * chunks / n) * placement.num_slots() +
                                           placement.slot(placement.rank_for(e, t), e), t);
                }
        std::sort(order.begin(), order.end());
        ASSERT_EQ(all.send_token.size(), order.size());
        for (size_t r = 0; r < order.size(); ++r) EXPECT_EQ(all.send_token[r], order[r].second) << r;
        identity_results(all);
        std::vector<float> expected(n * d);
        LayerResult r_all;
        r_all.expert_load.assign(num_experts, 0);
        combine_tokens(routing, all.send, all.own, all.slot_row, d, expected, r_all);
        for (int64_t t = 0; t < n; ++t)  // weights 0.75 + 0.25 of x; only 0.75 x where slot 1 of token 1 was dropped
            for (int j = 0; j < d; ++j) EXPECT_FLOAT_EQ(expected[t * d + j], (t == 1 ? 0.75f : 1.0f) * x[t * d + j]);
        for (int self = 0; self < num_ranks; ++self) {
            DispatchBuffers buf;
            EXPECT_EQ(assign_rows(placement, routing, kept, d, 0, buf, chunks, self), counts);
            EXPECT_EQ(buf.send.size() + buf.own.size(), all.send.size());
            for (int64_t t = 0; t < n; ++t)
                for (int i = 0; i < k; ++i) {
                    const int64_t row = buf.slot_row[t * k + i];
                    if (!kept[t * k + i]) {
                        EXPECT_EQ(row, -1);
                        continue;
                    }
                    const bool mine = placement.rank_for(routing.expert_ids[t * k + i], t) == self;
                    EXPECT_EQ(row <= -2, mine) << t << " " << i;
                    EXPECT_EQ(mine ? buf.own_token[-2 - row] : buf.send_token[row], t);
                }
            identity_results(buf);
            std::vector<float> out(n * d);
            LayerResult result;
            result.expert_load.assign(num_experts, 0);
            combine_tokens(routing, buf.send, buf.own, buf.slot_row, d, out, result);
            EXPECT_EQ(out, expected) << "chunks " << chunks << " self " << self;
            EXPECT_EQ(result.dropped, 1);
            EXPECT_EQ(result.expert_load, r_all.expert_load);
        }
    }
}

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
