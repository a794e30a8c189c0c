// mpi::all_or_none at 1-4 ranks, in both wait modes: fn runs once on every rank; when no rank throws nobody
// does; when some ranks throw (epmoe::Error or any std::exception), every rank throws epmoe::AgreedError with
// the message of the lowest failing rank of the communicator, whatever the lengths of the other messages.
#include <gtest/gtest.h>
#include <mpi.h>

#include <functional>
#include <new>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>

#include "epmoe/base/error.hpp"
#include "epmoe/comm/mpi.hpp"
#include "mpi_test_util.hpp"

namespace epmoe {
namespace {

// The message of the AgreedError that all_or_none(fn) threw on this rank, or nullopt if it returned. Counts
// the calls of fn in `runs`.
std::optional<std::string> agreed(const mpi::Comm& comm, int& runs, const std::function<void()>& fn) {
    try {
        mpi::all_or_none(comm, [&] {
            ++runs;
            fn();
        });
    } catch (const AgreedError& e) {
        return std::string(e.what());
    }
    return std::nullopt;
}

// A message whose length grows with the rank (up) or shrinks with it (down).
std::string message_of(int rank, bool up) {
    return "rank " + std::to_string(rank) + " failed" +
           std::string(static_cast<size_t>(up ? 3 * rank : 12 - 3 * rank), '!');
}

class AllOrNone : public mpi_test::WaitModeTest {};

TEST_P(AllOrNone, NoRankThrowsNobodyThrows) {
    mpi::Comm comm(MPI_COMM_WORLD);
    int runs = 0;
    EXPECT_EQ(agreed(comm, runs, [] {}), std::nullopt);
    EXPECT_EQ(runs, 1);
    EXPECT_EQ(mpi::allreduce_one(comm, runs, mpi::Op::kSum), comm.size());
}

TEST_P(AllOrNone, TheLastRankThrowsEveryRankThrowsItsMessage) {
    mpi::Comm comm(MPI_COMM_WORLD);
    const int last = comm.size() - 1;
    int runs = 0;
    auto fn = [&] {
        if (comm.rank() == last) throw Error(message_of(last, true));
    };
    EXPECT_EQ(agreed(comm, runs, fn), message_of(last, true));
    EXPECT_EQ(runs, 1);
}

// Two failing ranks (one at 1 rank), with the lower's message shorter and then longer than the other's.
TEST_P(AllOrNone, TwoRanksThrowTheLowestRanksMessageWins) {
    mpi::Comm comm(MPI_COMM_WORLD);
    const std::set<int> failing = {comm.size() - 1, (comm.size() - 1) / 2};  // 4: {1, 3}; 3: {1, 2}; 2: {0, 1}
    for (bool up : {true, false}) {
        int runs = 0;
        auto fn = [&] {
            if (failing.count(comm.rank())) throw Error(message_of(comm.rank(), up));
        };
        EXPECT_EQ(agreed(comm, runs, fn), message_of(*failing.begin(), up));
        EXPECT_EQ(runs, 1);
    }
}

// Any std::exception counts, and its what() is the message; the result is still an epmoe::Error.
TEST_P(AllOrNone, StdExceptionsAreAgreedToo) {
    mpi::Comm comm(MPI_COMM_WORLD);
    int runs = 0;
    auto out_of_range = [&] {
        if (comm.rank() == 0) throw std::out_of_range("index 7 past 3");
    };
    auto bad_alloc = [&] {
        if (comm.rank() == comm.size() - 1) throw std::bad_alloc();
    };
    EXPECT_EQ(agreed(comm, runs, out_of_range), "index 7 past 3");
    EXPECT_EQ(agreed(comm, runs, bad_alloc), std::string(std::bad_alloc().what()));
    EXPECT_THROW(mpi::all_or_none(comm, [&] { throw std::runtime_error("everyone"); }), Error);
    EXPECT_EQ(runs, 2);
}

// An empty message is still a failure; an AgreedError thrown by fn is agreed on again.
TEST_P(AllOrNone, EmptyMessageAndNestedAgreement) {
    mpi::Comm comm(MPI_COMM_WORLD);
    int runs = 0;
    auto empty = [&] {
        if (comm.rank() == comm.size() - 1) throw Error("");
    };
    auto nested = [&] {
        int inner_runs = 0;
        const auto inner = agreed(comm, inner_runs, [&] {
            if (comm.rank() == 0) throw Error("inner");
        });
        throw AgreedError("outer on rank " + std::to_string(comm.rank()) + " after " + inner.value_or("nothing"));
    };
    EXPECT_EQ(agreed(comm, runs, empty), "");
    EXPECT_EQ(agreed(comm, runs, nested), "outer on rank 0 after inner");
    EXPECT_EQ(runs, 2);
}

// On a sub-communicator the lowest failing rank is counted in that communicator.
TEST_P(AllOrNone, LowestRankOfTheCommunicatorNotOfTheWorld) {
    mpi::Comm world(MPI_COMM_WORLD);
    mpi::Comm half = world.split(world.rank() % 2, world.rank());
    const int last_of_half = world.size() - 1 - (world.size() - 1 - world.rank() % 2) % 2;  // its world rank
    int runs = 0;
    auto fn = [&] {
        if (half.rank() == half.size() - 1) throw Error("world rank " + std::to_string(world.rank()));
    };
    EXPECT_EQ(agreed(half, runs, fn), "world rank " + std::to_string(last_of_half));
}

EPMOE_WAIT_MODES(AllOrNone);

}  // namespace
}  // namespace epmoe
