// Placement (src/moe/placement.cpp): contiguous, round-robin, balanced and replicated owners, slot numbering,
// and the load profile read from an earlier run's metrics.jsonl.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "epmoe/base/error.hpp"
#include "epmoe/moe/placement.hpp"

namespace epmoe {
namespace {

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
    std::ofstream(dir / "metrics.jsonl")
        << R"({"layers": [{"expert_load": [1, 2, 3, 4]}, {"expert_load": [1, 0, 0, 0]}]})"
        << "\n"
        << R"({"layers": [{"expert_load": [0, 0, 0, 10]}]})"
        << "\n";
    EXPECT_EQ(read_load_profile(dir.string(), 4), (std::vector<double>{2, 2, 3, 14}));
    EXPECT_THROW(read_load_profile(dir.string(), 5), Error);
    std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace epmoe
