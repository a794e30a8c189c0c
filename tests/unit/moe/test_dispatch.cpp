// Dispatch (src/moe/dispatch.cpp): expert capacity and drops in global token order, the row layout of
// assign_rows and combine_tokens, and the row blocks the experts run in.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <numeric>

#include "../../../src/moe/dispatch_internal.hpp"
#include "epmoe/moe/dispatch.hpp"
#include "epmoe/moe/placement.hpp"

namespace epmoe {
namespace {

TEST(Capacity, FormulaIsCeilOfFactorTimesTokensTimesKOverE) {
    EXPECT_EQ(expert_capacity(1.0, 10, 2, 8), 3);   // ceil(2.5)
    EXPECT_EQ(expert_capacity(1.25, 16, 2, 8), 5);  // exactly 5
    EXPECT_EQ(expert_capacity(0.01, 10, 1, 8), 1);  // ceil of a small positive number
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
                                           placement.slot(placement.rank_for(e, t), e),
                                       t);
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

// Rows of three experts from two sources: 128 (one block), 2,048 (halves of what is left, the last 128 in two)
// and 300 (160, then the last 140 in two: 80 rounded up to 16, and 60).
TEST(RowBlocks, HalvesWhatIsLeftAndSplitsTheLastBlockOfALargeExpert) {
    const std::vector<int> local = {0, 1, 2}, counts = {100, 1000, 150, 28, 1048, 150};  // [source][expert]
    const ChunkRowsOfExperts c{local, counts, std::vector<SourceRows>(2), std::vector<int64_t>(6)};
    std::vector<std::vector<int64_t>> sizes(3);
    for (const RowBlock& b : row_blocks(c, /*largest_first=*/false)) {
        const int64_t start = std::accumulate(sizes[b.j].begin(), sizes[b.j].end(), int64_t{0});
        EXPECT_EQ(b.first, start) << "expert " << b.j << ": blocks in row order, none skipped";
        sizes[b.j].push_back(b.end - b.first);
    }
    EXPECT_EQ(sizes[0], (std::vector<int64_t>{128}));
    EXPECT_EQ(sizes[1], (std::vector<int64_t>{1024, 512, 256, 128, 64, 64}));
    EXPECT_EQ(sizes[2], (std::vector<int64_t>{160, 80, 60}));
    const std::vector<RowBlock> ordered = row_blocks(c, /*largest_first=*/true);
    EXPECT_EQ(ordered.size(), 10u);
    for (size_t i = 1; i < ordered.size(); ++i)
        EXPECT_GE(ordered[i - 1].end - ordered[i - 1].first, ordered[i].end - ordered[i].first);
}

}  // namespace
}  // namespace epmoe
