// The MPI wrappers' communicator and all-to-all exchanges (include/epmoe/comm/mpi.hpp), for real at 1-4 ranks
// as gloo's alltoallv_test.cc tests its transport: Comm's dup/free/move/split, alltoallv and alltoallv_known
// with uneven and zero counts, PendingAlltoallv with and without overlap, and alltoall_rows (MPI_Alltoallw).
// Every received element encodes its source rank, destination rank and index, and every one is checked.
#include <gtest/gtest.h>
#include <mpi.h>
#include <sched.h>

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "epmoe/comm/mpi.hpp"
#include "mpi_test_util.hpp"

namespace epmoe {
namespace {

using mpi_test::count_patterns;
using mpi_test::Exchange;
using mpi_test::tag;

// Counts the MPI_Comm_free of every communicator it watches, through an attribute's delete callback.
class FreeCounter {
public:
    FreeCounter() { MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, &FreeCounter::on_free, &keyval_, &freed_); }
    ~FreeCounter() { MPI_Comm_free_keyval(&keyval_); }
    FreeCounter(const FreeCounter&) = delete;
    FreeCounter& operator=(const FreeCounter&) = delete;
    void watch(const mpi::Comm& comm) { MPI_Comm_set_attr(comm.raw(), keyval_, nullptr); }
    int freed() const { return freed_; }

private:
    static int on_free(MPI_Comm, int, void*, void* freed) {
        ++*static_cast<int*>(freed);
        return MPI_SUCCESS;
    }
    int keyval_ = MPI_KEYVAL_INVALID;
    int freed_ = 0;
};

int compare(MPI_Comm a, MPI_Comm b) {
    int result = MPI_UNEQUAL;
    MPI_Comm_compare(a, b, &result);
    return result;
}

TEST(Comm, DupIsANewCongruentHandleFreedOnce) {
    int world_rank = -1, world_size = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    FreeCounter counter;
    {
        mpi::Comm a(MPI_COMM_WORLD);
        counter.watch(a);
        EXPECT_NE(a.raw(), MPI_COMM_WORLD);
        EXPECT_EQ(compare(a.raw(), MPI_COMM_WORLD), MPI_CONGRUENT);
        EXPECT_EQ(a.rank(), world_rank);
        EXPECT_EQ(a.size(), world_size);
        mpi::Comm b(a.raw());  // a dup of a dup: its own handle, without a's attribute
        EXPECT_NE(b.raw(), a.raw());
        EXPECT_EQ(compare(b.raw(), a.raw()), MPI_CONGRUENT);
        EXPECT_EQ(counter.freed(), 0);
    }
    EXPECT_EQ(counter.freed(), 1);
}

TEST(Comm, MoveTransfersOwnershipAndAssignmentFreesTheOldHandle) {
    FreeCounter counter;
    {
        mpi::Comm a(MPI_COMM_WORLD);
        counter.watch(a);
        const MPI_Comm handle = a.raw();
        mpi::Comm b(std::move(a));
        EXPECT_EQ(a.raw(), MPI_COMM_NULL);  // NOLINT(bugprone-use-after-move): the contract under test
        EXPECT_EQ(b.raw(), handle);
        {
            mpi::Comm c(MPI_COMM_WORLD);
            counter.watch(c);
            c = std::move(b);  // frees c's own communicator, takes b's
            EXPECT_EQ(counter.freed(), 1);
            EXPECT_EQ(c.raw(), handle);
            EXPECT_EQ(b.raw(), MPI_COMM_NULL);  // NOLINT(bugprone-use-after-move)
            mpi::Comm& alias = c;
            c = std::move(alias);  // self-assignment keeps the communicator
            EXPECT_EQ(c.raw(), handle);
            EXPECT_EQ(counter.freed(), 1);
            EXPECT_EQ(mpi::allreduce_one(c, 1, mpi::Op::kSum), c.size());
        }
        EXPECT_EQ(counter.freed(), 2);
        a = mpi::Comm(MPI_COMM_WORLD);  // a moved-from Comm can be assigned again
        EXPECT_EQ(compare(a.raw(), MPI_COMM_WORLD), MPI_CONGRUENT);
    }
    EXPECT_EQ(counter.freed(), 2);  // the moved-from a and b freed nothing
}

TEST(Comm, SplitGroupsByColorOrdersByKeyAndIsFreed) {
    mpi::Comm world(MPI_COMM_WORLD);
    const int me = world.rank(), ranks = world.size();
    FreeCounter counter;
    {
        mpi::Comm half = world.split(me % 2, ranks - me);  // same parity, in reverse rank order
        counter.watch(half);
        int members = 0, above = 0, rank_sum = 0;
        for (int r = me % 2; r < ranks; r += 2) {
            ++members;
            above += r > me;
            rank_sum += r;
        }
        EXPECT_EQ(half.size(), members);
        EXPECT_EQ(half.rank(), above);
        EXPECT_EQ(mpi::allreduce_one(half, me, mpi::Op::kSum), rank_sum);
    }
    EXPECT_EQ(counter.freed(), 1);
}

TEST(Comm, SplitSharedHoldsTheRanksOfThisHostInRankOrder) {
    mpi::Comm world(MPI_COMM_WORLD);
    const std::vector<std::string> hosts = mpi::allgather_strings(world, mpi::processor_name());
    mpi::Comm host = world.split_shared();
    int here = 0, before = 0;
    for (int r = 0; r < world.size(); ++r) {
        here += hosts[r] == hosts[world.rank()];
        before += r < world.rank() && hosts[r] == hosts[world.rank()];
    }
    EXPECT_EQ(host.size(), here);
    EXPECT_EQ(host.rank(), before);
}

class Alltoallv : public mpi_test::WaitModeTest {};

// alltoallv<T> under every count pattern: returned counts and every element; recv shrinks from a larger size.
template <typename T>
void check_alltoallv(const mpi::Comm& comm) {
    for (const auto& pattern : count_patterns()) {
        SCOPED_TRACE(pattern.name);
        Exchange<T> x(comm, pattern);
        std::vector<T> recv(100, T(7));
        const std::vector<int> recv_counts = mpi::alltoallv<T>(comm, x.send, x.send_counts, recv);
        EXPECT_EQ(recv_counts, x.recv_counts);
        EXPECT_EQ(recv, x.expected);
    }
}

TEST_P(Alltoallv, EveryCountPatternEveryElement) {
    mpi::Comm comm(MPI_COMM_WORLD);
    check_alltoallv<int32_t>(comm);
    check_alltoallv<double>(comm);
    check_alltoallv<int64_t>(comm);
    check_alltoallv<float>(comm);
}

// Known receive counts: nothing is written past them (the slack keeps its sentinel).
TEST_P(Alltoallv, KnownCountsWriteOnlyTheirElements) {
    mpi::Comm comm(MPI_COMM_WORLD);
    for (const auto& pattern : count_patterns()) {
        SCOPED_TRACE(pattern.name);
        Exchange<int32_t> x(comm, pattern);
        std::vector<int32_t> recv(x.expected.size() + 3, -7);
        mpi::alltoallv_known<int32_t>(comm, x.send, x.send_counts, recv, x.recv_counts);
        x.expected.resize(recv.size(), -7);
        EXPECT_EQ(recv, x.expected);
    }
}

// Displacements past INT_MAX fail as an Error on every rank (here every rank overflows), before any MPI call.
TEST_P(Alltoallv, CountsPastIntMaxFail) {
    mpi::Comm comm(MPI_COMM_WORLD);
    if (comm.size() < 2) GTEST_SKIP() << "one count cannot sum past INT_MAX";
    std::vector<int> huge(comm.size(), 0), zeros(comm.size(), 0);
    huge[0] = huge[1] = INT32_MAX;
    EXPECT_THROW(mpi::alltoallv_known<int32_t>(comm, {}, huge, {}, zeros), Error);
    EXPECT_THROW(mpi::alltoallv_known<int32_t>(comm, {}, zeros, {}, huge), Error);
}

EPMOE_WAIT_MODES(Alltoallv);

class Pending : public mpi_test::WaitModeTest {};

// Overlap: a started MPI_Ialltoallv (active until wait), driven by test(). Without: done in the constructor.
// The count vectors are temporaries: the object keeps its own while MPI reads them.
TEST_P(Pending, StartTestWaitUnderEveryPattern) {
    mpi::Comm comm(MPI_COMM_WORLD);
    for (bool overlap : {false, true})
        for (const auto& pattern : count_patterns()) {
            SCOPED_TRACE(std::string(pattern.name) + (overlap ? ", overlap" : ", no overlap"));
            Exchange<int32_t> x(comm, pattern);
            std::vector<int32_t> recv(x.expected.size() + 2, -7);
            x.expected.resize(recv.size(), -7);
            mpi::PendingAlltoallv pending(comm, x.send.data(), std::vector<int>(x.send_counts), recv.data(),
                                          std::vector<int>(x.recv_counts), mpi::type_of<int32_t>(), overlap);
            EXPECT_EQ(pending.active(), overlap);
            if (!overlap) {
                EXPECT_EQ(recv, x.expected);  // done in the constructor
            }
            for (int i = 0; i < 3; ++i) pending.test();
            pending.wait();
            EXPECT_FALSE(pending.active());
            EXPECT_EQ(recv, x.expected);
            pending.wait();  // completed: both are no-ops
            pending.test();
            EXPECT_FALSE(pending.active());
        }
}

// test() alone completes a started exchange (it drives MPI's progress): active() turns false, the data is there.
TEST_P(Pending, TestAloneCompletes) {
    mpi::Comm comm(MPI_COMM_WORLD);
    const double deadline = mpi::wtime() + 5;  // for all patterns: each takes milliseconds
    for (const auto& pattern : count_patterns()) {
        SCOPED_TRACE(pattern.name);
        Exchange<int64_t> x(comm, pattern);
        std::vector<int64_t> recv(x.expected.size(), -7);
        mpi::PendingAlltoallv pending(comm, x.send.data(), x.send_counts, recv.data(), x.recv_counts,
                                      mpi::type_of<int64_t>(), true);
        while (pending.active() && mpi::wtime() < deadline) {
            pending.test();
            sched_yield();
        }
        EXPECT_FALSE(pending.active()) << "test() did not complete the exchange in 5 s";
        EXPECT_EQ(recv, x.expected);
    }
}

// The destructor of an active exchange waits for it; a default-constructed one holds nothing.
TEST_P(Pending, DestructorCompletesAndDefaultIsInactive) {
    mpi::Comm comm(MPI_COMM_WORLD);
    Exchange<double> x(comm, count_patterns()[0]);
    std::vector<double> recv(x.expected.size(), -7.0);
    {
        std::optional<mpi::PendingAlltoallv> pending;
        pending.emplace(comm, x.send.data(), x.send_counts, recv.data(), x.recv_counts, mpi::type_of<double>(), true);
        EXPECT_TRUE(pending->active());
    }
    EXPECT_EQ(recv, x.expected);
    mpi::PendingAlltoallv idle;
    EXPECT_FALSE(idle.active());
    idle.test();
    idle.wait();
    EXPECT_FALSE(idle.active());
}

EPMOE_WAIT_MODES(Pending);

constexpr int kBaseRows = 6, kRowLen = 3;

// Element j of row `row` of rank `rank`'s base array.
int32_t row_value(int rank, int64_t row, int j) { return rank * 1000 + static_cast<int32_t>(row) * 10 + j; }

// The base rows rank `from` sends rank `to`: out of order and repeated; the last rank (P > 1) gets none, and
// rank 1 sends rank 0 none (P > 2). With `nothing`, no rank sends any row.
std::vector<int64_t> rows_for(int from, int to, int ranks, bool nothing) {
    if (nothing || (ranks > 1 && to == ranks - 1) || (ranks > 2 && from == 1 && to == 0)) return {};
    const int64_t a = (from + 2 * to) % kBaseRows;
    std::vector<int64_t> rows = {(a + 4) % kBaseRows, a, (a + 4) % kBaseRows, (a + 5) % kBaseRows};
    rows.resize(static_cast<size_t>(4 - (from + to) % 4));
    return rows;
}

// alltoall_rows on base arrays of T: every received row, contiguous in rank order, and nothing past them.
template <typename T>
void check_rows(const mpi::Comm& comm, bool nothing) {
    const int ranks = comm.size(), me = comm.rank();
    std::vector<T> base(kBaseRows * kRowLen);
    for (int64_t r = 0; r < kBaseRows; ++r)
        for (int j = 0; j < kRowLen; ++j) base[r * kRowLen + j] = static_cast<T>(row_value(me, r, j));
    std::vector<int64_t> rows;
    std::vector<int> rows_to, recv_rows;
    std::vector<T> expected;
    for (int peer = 0; peer < ranks; ++peer) {
        const std::vector<int64_t> out = rows_for(me, peer, ranks, nothing), in = rows_for(peer, me, ranks, nothing);
        rows.insert(rows.end(), out.begin(), out.end());
        rows_to.push_back(static_cast<int>(out.size()));
        recv_rows.push_back(static_cast<int>(in.size()));
        for (int64_t row : in)
            for (int j = 0; j < kRowLen; ++j) expected.push_back(static_cast<T>(row_value(peer, row, j)));
    }
    std::vector<T> recv(expected.size() + kRowLen, T(-7));
    expected.resize(recv.size(), T(-7));
    mpi::alltoall_rows(comm, base.data(), rows, rows_to, recv.data(), recv_rows, kRowLen, mpi::type_of<T>());
    EXPECT_EQ(recv, expected);
}

class AlltoallRows : public mpi_test::WaitModeTest {};

TEST_P(AlltoallRows, RowsByIndexOutOfOrderRepeatedAndNone) {
    mpi::Comm comm(MPI_COMM_WORLD);
    check_rows<int32_t>(comm, false);
    check_rows<double>(comm, false);
    check_rows<uint8_t>(comm, false);  // uint8_t: row_value wraps, the same on both sides
}

TEST_P(AlltoallRows, NoRowsAnywhere) {
    mpi::Comm comm(MPI_COMM_WORLD);
    check_rows<int32_t>(comm, true);
}

EPMOE_WAIT_MODES(AlltoallRows);

}  // namespace
}  // namespace epmoe
