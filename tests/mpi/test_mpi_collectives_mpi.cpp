// The MPI wrappers' other collectives (include/epmoe/comm/mpi.hpp) at 1-4 ranks, in both wait modes: alltoall,
// allreduce (sum, max, min) and allreduce_one, exscan_sum, bcast, gather_to_root, gatherv_to_root,
// allgather_strings, host_leaders and barrier, each against a plain loop over the ranks; to_int_count's limit; the wait
// mode and the process queries.
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "epmoe/comm/hosts.hpp"
#include "epmoe/comm/mpi.hpp"
#include "mpi_test_util.hpp"

namespace epmoe {
namespace {

using mpi::Op;
using mpi_test::tag;

class Collective : public mpi_test::WaitModeTest {};

TEST_P(Collective, AlltoallExchangesBlocks) {
    mpi::Comm comm(MPI_COMM_WORLD);
    const int ranks = comm.size(), me = comm.rank();
    for (int block : {1, 3, 0}) {
        std::vector<int> send, expected;
        for (int peer = 0; peer < ranks; ++peer)
            for (int i = 0; i < block; ++i) {
                send.push_back(tag(me, peer, i));
                expected.push_back(tag(peer, me, i));
            }
        EXPECT_EQ(mpi::alltoall(comm, send, block), expected) << "block " << block;
    }
}

// Element i of rank r's contribution: signs alternate, and the 64-bit types use values past 2^32.
template <typename T>
T contribution(int rank, int i) {
    if constexpr (std::is_same_v<T, uint64_t>) {
        return (uint64_t{1} << 40) * static_cast<uint64_t>(rank + 1) + static_cast<uint64_t>(i);
    } else {
        const T magnitude = static_cast<T>(std::is_same_v<T, int64_t> ? (int64_t{1} << 35) : 1) * (rank + 1) * (i + 1);
        return i % 2 ? static_cast<T>(-magnitude) : magnitude;
    }
}

// The reduction over `ranks` ranks of element i, as a plain loop.
template <typename T>
T reduced(int ranks, int i, Op op) {
    T acc = contribution<T>(0, i);
    for (int r = 1; r < ranks; ++r) {
        const T v = contribution<T>(r, i);
        acc = op == Op::kSum ? static_cast<T>(acc + v) : op == Op::kMax ? std::max(acc, v) : std::min(acc, v);
    }
    return acc;
}

template <typename T>
void check_allreduce(const mpi::Comm& comm) {
    for (Op op : {Op::kSum, Op::kMax, Op::kMin}) {
        std::vector<T> data, expected;
        for (int i = 0; i < 5; ++i) {
            data.push_back(contribution<T>(comm.rank(), i));
            expected.push_back(reduced<T>(comm.size(), i, op));
        }
        mpi::allreduce<T>(comm, data, op);
        EXPECT_EQ(data, expected) << "op " << static_cast<int>(op);
        EXPECT_EQ(mpi::allreduce_one(comm, contribution<T>(comm.rank(), 3), op), reduced<T>(comm.size(), 3, op));
    }
}

TEST_P(Collective, AllreduceSumMaxMin) {
    mpi::Comm comm(MPI_COMM_WORLD);
    check_allreduce<int32_t>(comm);
    check_allreduce<int64_t>(comm);
    check_allreduce<uint64_t>(comm);
    check_allreduce<float>(comm);
    check_allreduce<double>(comm);
    mpi::allreduce<int32_t>(comm, {}, Op::kSum);  // nothing to reduce
}

TEST_P(Collective, ExscanSumIsExclusiveAndZeroOnRankZero) {
    mpi::Comm comm(MPI_COMM_WORLD);
    std::vector<int64_t> mine, expected(4, 0);
    std::vector<double> mine_d, expected_d(4, 0.0);
    for (int i = 0; i < 4; ++i) {
        mine.push_back(contribution<int64_t>(comm.rank(), i));
        mine_d.push_back(contribution<double>(comm.rank(), i));
        for (int r = 0; r < comm.rank(); ++r) {
            expected[i] += contribution<int64_t>(r, i);
            expected_d[i] += contribution<double>(r, i);
        }
    }
    EXPECT_EQ(mpi::exscan_sum<int64_t>(comm, mine), expected);
    EXPECT_EQ(mpi::exscan_sum<double>(comm, mine_d), expected_d);
    EXPECT_TRUE(mpi::exscan_sum<int32_t>(comm, {}).empty());
}

TEST_P(Collective, BcastFromEveryRoot) {
    mpi::Comm comm(MPI_COMM_WORLD);
    for (int root = 0; root < comm.size(); ++root) {
        std::vector<int32_t> data(5, -1), expected;
        std::string text(6, '?');
        for (int i = 0; i < 5; ++i) expected.push_back(tag(root, 0, i));
        if (comm.rank() == root) {
            data = expected;
            text = "root " + std::to_string(root);
        }
        mpi::bcast<int32_t>(comm, data, root);
        mpi::bcast(comm, std::span<char>(text.data(), text.size()), root);
        EXPECT_EQ(data, expected) << "root " << root;
        EXPECT_EQ(text, "root " + std::to_string(root));
    }
}

// gather_to_root: root gets every rank's block in rank order, the others nothing; also of empty blocks.
TEST_P(Collective, GatherToRoot) {
    mpi::Comm comm(MPI_COMM_WORLD);
    for (int root : {0, comm.size() - 1})
        for (int len : {3, 0}) {
            std::vector<double> block, expected;
            for (int i = 0; i < len; ++i) block.push_back(tag(comm.rank(), root, i));
            for (int r = 0; r < comm.size() && comm.rank() == root; ++r)
                for (int i = 0; i < len; ++i) expected.push_back(tag(r, root, i));
            EXPECT_EQ(mpi::gather_to_root<double>(comm, block, root), expected) << "root " << root << " len " << len;
        }
}

// gatherv_to_root<T> with rank r's block of r % 3 elements (rank 0's empty), or every block empty.
template <typename T>
void check_gatherv(const mpi::Comm& comm, bool all_empty) {
    auto length = [&](int r) { return all_empty ? 0 : r % 3; };
    for (int root : {0, comm.size() - 1}) {
        std::vector<T> block, expected;
        for (int i = 0; i < length(comm.rank()); ++i) block.push_back(static_cast<T>(tag(comm.rank(), root, i)));
        for (int r = 0; r < comm.size() && comm.rank() == root; ++r)
            for (int i = 0; i < length(r); ++i) expected.push_back(static_cast<T>(tag(r, root, i)));
        EXPECT_EQ(mpi::gatherv_to_root<T>(comm, block, root), expected) << "root " << root;
    }
}

TEST_P(Collective, GathervToRootBlocksOfDifferentSizes) {
    mpi::Comm comm(MPI_COMM_WORLD);
    check_gatherv<int64_t>(comm, false);
    check_gatherv<float>(comm, false);
    check_gatherv<char>(comm, false);  // tag() wraps in char, the same on both sides
    check_gatherv<int32_t>(comm, true);
}

// Rank r's string: empty, plain, or with an embedded NUL; lengths differ.
std::string string_of(int rank) {
    if (rank % 3 == 0) return "";
    if (rank % 3 == 1) return "rank " + std::to_string(rank);
    return std::string("nul\0in", 6) + std::string(static_cast<size_t>(rank), '+');
}

TEST_P(Collective, AllgatherStringsOfDifferentLengths) {
    mpi::Comm comm(MPI_COMM_WORLD);
    std::vector<std::string> expected, empty(comm.size());
    for (int r = 0; r < comm.size(); ++r) expected.push_back(string_of(r));
    EXPECT_EQ(mpi::allgather_strings(comm, string_of(comm.rank())), expected);
    EXPECT_EQ(mpi::allgather_strings(comm, ""), empty);
}

// host_leaders against the processor names: ranks with the same name share a leader, the lowest such rank.
TEST_P(Collective, HostLeadersAreTheLowestRankOfEachHost) {
    mpi::Comm comm(MPI_COMM_WORLD);
    const std::vector<std::string> names = mpi::allgather_strings(comm, mpi::processor_name());
    std::vector<int> expected(comm.size());
    for (int r = 0; r < comm.size(); ++r)
        expected[r] = static_cast<int>(std::find(names.begin(), names.end(), names[r]) - names.begin());
    EXPECT_EQ(mpi::host_leaders(comm), expected);
}

// No rank leaves the barrier before the last one entered it: the last rank writes a file first.
TEST_P(Collective, BarrierWaitsForTheLastRank) {
    mpi::Comm comm(MPI_COMM_WORLD);
    const int64_t job = mpi::allreduce_one(comm, comm.rank() == 0 ? static_cast<int64_t>(getpid()) : 0, Op::kMax);
    const std::filesystem::path mark =
        std::filesystem::path(::testing::TempDir()) /
        ("epmoe_barrier_" + std::to_string(job) + "_" + std::to_string(GetParam() == mpi::WaitMode::kBlock));
    if (comm.rank() == comm.size() - 1) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        std::ofstream(mark) << "entered";
    }
    mpi::barrier(comm);
    EXPECT_TRUE(std::filesystem::exists(mark));
    mpi::barrier(comm);
    if (comm.rank() == 0) std::filesystem::remove(mark);
}

EPMOE_WAIT_MODES(Collective);

TEST(ToIntCount, FailsPastIntMaxNamingWhat) {
    EXPECT_EQ(mpi::to_int_count(0, "x"), 0);
    EXPECT_EQ(mpi::to_int_count(static_cast<size_t>(INT_MAX), "x"), INT_MAX);
    try {
        mpi::to_int_count(static_cast<size_t>(INT_MAX) + 1, "gather");
        ADD_FAILURE() << "no error";
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()), "gather: 2147483648 elements exceed MPI's int count limit");
    }
    EXPECT_THROW(mpi::to_int_count(SIZE_MAX, "x"), Error);
}

TEST(WaitMode, IsYieldBetweenTestsAndSetRoundTrips) {
    EXPECT_EQ(mpi::wait_mode(), mpi::WaitMode::kYield);  // the default, and every test restores it
    mpi::set_wait_mode(mpi::WaitMode::kBlock);
    EXPECT_EQ(mpi::wait_mode(), mpi::WaitMode::kBlock);
    mpi::set_wait_mode(mpi::WaitMode::kYield);
    EXPECT_EQ(mpi::wait_mode(), mpi::WaitMode::kYield);
}

TEST(Process, LibraryProcessorAndClock) {
    const std::string version = mpi::library_version();
    EXPECT_EQ(version.find('\n'), std::string::npos);
    EXPECT_TRUE(version.find("Open MPI") != std::string::npos || version.find("MPICH") != std::string::npos) << version;
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    EXPECT_EQ(mpi::processor_name(), std::string(host));
    const double t0 = mpi::wtime();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_GE(mpi::wtime() - t0, 0.004);
}

}  // namespace
}  // namespace epmoe
