// The DP x EP communicators of `epmoe train --ep-size N` (src/train/groups.cpp) at 1-4 ranks: for every N that
// divides the world, each rank's group is the N consecutive ranks around it in world order and its expert
// replicas are the ranks at the same position in every group; an N that does not divide the world fails on
// every rank alike (AgreedError naming train.ep_size), and 0 means the whole world.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "epmoe/base/error.hpp"
#include "epmoe/comm/mpi.hpp"
#include "epmoe/train/groups.hpp"

namespace epmoe {
namespace {

// The world ranks of comm's members, in comm's rank order.
std::vector<int> world_ranks(const mpi::Comm& comm, int world_rank) {
    std::vector<int> out(static_cast<size_t>(comm.size()), 0);
    out[static_cast<size_t>(comm.rank())] = world_rank;
    mpi::allreduce(comm, std::span<int>(out), mpi::Op::kSum);
    return out;
}

TEST(TrainGroups, EveryDivisorMakesConsecutiveGroupsAndStridedReplicas) {
    const mpi::Comm world(MPI_COMM_WORLD);
    const int p = world.size(), r = world.rank();
    for (int n = 1; n <= p; ++n) {
        if (p % n != 0) continue;
        const TrainGroups groups(world, n);
        EXPECT_EQ(groups.ep_size(), n);
        EXPECT_EQ(groups.dp_size(), p / n);
        EXPECT_EQ(groups.group(), r / n);
        EXPECT_EQ(groups.ep().rank(), r % n) << "the position in the group is the placement's rank";
        std::vector<int> group, replicas;
        for (int j = 0; j < n; ++j) group.push_back(r / n * n + j);
        for (int g = 0; g < p / n; ++g) replicas.push_back(r % n + g * n);
        EXPECT_EQ(world_ranks(groups.ep(), r), group) << "ep_size " << n;
        EXPECT_EQ(world_ranks(groups.expert_replicas(), r), replicas) << "ep_size " << n;
    }
}

TEST(TrainGroups, ZeroIsTheWholeWorld) {
    const mpi::Comm world(MPI_COMM_WORLD);
    const TrainGroups groups(world, 0);
    EXPECT_EQ(groups.ep_size(), world.size());
    EXPECT_EQ(groups.dp_size(), 1);
    EXPECT_EQ(groups.ep().rank(), world.rank());
}

TEST(TrainGroups, SizeThatDoesNotDivideTheWorldFailsOnEveryRank) {
    const mpi::Comm world(MPI_COMM_WORLD);
    for (int n : {world.size() + 1, 2 * world.size() + 1, -1}) {  // none divides the world
        try {
            TrainGroups groups(world, n);
            ADD_FAILURE() << "ep_size " << n << " at " << world.size() << " ranks was accepted";
        } catch (const AgreedError& e) {
            EXPECT_NE(std::string(e.what()).find("train.ep_size " + std::to_string(n)), std::string::npos) << e.what();
        }
    }
    if (world.size() == 4) EXPECT_THROW(TrainGroups(world, 3), AgreedError);
}

}  // namespace
}  // namespace epmoe
