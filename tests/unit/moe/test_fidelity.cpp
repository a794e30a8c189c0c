// Router fidelity counts (src/moe/fidelity.cpp): changed assignments compare expert sets, not their order.
#include <gtest/gtest.h>

#include "epmoe/moe/fidelity.hpp"

namespace epmoe {
namespace {

TEST(Fidelity, CountChangedComparesSetsNotOrder) {
    Routing biased, unbiased;
    biased.top_k = unbiased.top_k = 2;
    biased.expert_ids = {0, 1, 2, 3, 5, 6};
    unbiased.expert_ids = {1, 0, 2, 4, 5, 6};
    FidelityCounts c;
    count_changed(biased, unbiased, {}, c);
    EXPECT_EQ(c.changed_slots, 1);
    EXPECT_EQ(c.slots, 6);
    EXPECT_EQ(c.changed_tokens, 1);
    EXPECT_EQ(c.tokens, 3);
    // A dropped assignment changed the output too, even where the routing did not change.
    FidelityCounts d;
    const std::vector<uint8_t> kept = {1, 1, 1, 0, 0, 1};
    count_changed(biased, unbiased, kept, d);
    EXPECT_EQ(d.changed_slots, 2);  // slot (1, 1) moved and was dropped (once); slot (2, 0) dropped
    EXPECT_EQ(d.changed_tokens, 2);
    FidelityCounts same;
    count_changed(unbiased, unbiased, kept, same);
    EXPECT_EQ(same.changed_slots, 2);
}

}  // namespace
}  // namespace epmoe
