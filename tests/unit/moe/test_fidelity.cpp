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
    count_changed(biased, unbiased, c);
    EXPECT_EQ(c.changed_slots, 1);
    EXPECT_EQ(c.slots, 6);
    EXPECT_EQ(c.changed_tokens, 1);
    EXPECT_EQ(c.tokens, 3);
}

}  // namespace
}  // namespace epmoe
