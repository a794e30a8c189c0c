// Helpers of the MPI wrapper tests (test_mpi_*_mpi.cpp): a fixture that runs a test in each wait mode, and
// element values that say which rank sent them to which rank, so every received element can be checked.
#pragma once

#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "epmoe/comm/mpi.hpp"

namespace epmoe::mpi_test {

// A TEST_P run once with each mpi::WaitMode (the parameter); restores the process's mode afterwards.
class WaitModeTest : public ::testing::TestWithParam<mpi::WaitMode> {
protected:
    void SetUp() override {
        previous_ = mpi::wait_mode();
        mpi::set_wait_mode(GetParam());
    }
    void TearDown() override { mpi::set_wait_mode(previous_); }

private:
    mpi::WaitMode previous_ = mpi::WaitMode::kYield;
};

inline std::string wait_mode_name(const ::testing::TestParamInfo<mpi::WaitMode>& info) {
    return info.param == mpi::WaitMode::kBlock ? "Block" : "Yield";
}

// Instantiates a WaitModeTest suite for kYield and kBlock.
#define EPMOE_WAIT_MODES(suite)                                                                                 \
    INSTANTIATE_TEST_SUITE_P(WaitModes, suite,                                                                  \
                             ::testing::Values(::epmoe::mpi::WaitMode::kYield, ::epmoe::mpi::WaitMode::kBlock), \
                             ::epmoe::mpi_test::wait_mode_name)

// Element i of what rank `from` sends rank `to` (ranks < 10, i < 10000): exact in float, double and ints.
inline int32_t tag(int from, int to, int i) { return from * 1000000 + to * 10000 + i; }

// How many elements rank `from` sends rank `to` out of `ranks`: one of several patterns, by name.
struct CountPattern {
    const char* name;
    int (*count)(int from, int to, int ranks);
};

// Uneven counts, zero counts to some ranks, from some ranks, on the diagonal, and all zero.
inline const std::vector<CountPattern>& count_patterns() {
    static const std::vector<CountPattern> patterns = {
        {"uneven", [](int from, int to, int) { return 1 + (from + 2 * to) % 5; }},
        {"none to odd ranks", [](int from, int to, int) { return to % 2 ? 0 : 2 + from; }},
        {"none from odd ranks", [](int from, int to, int) { return from % 2 ? 0 : 1 + to; }},
        {"none to the last rank, none from rank 0",
         [](int from, int to, int ranks) { return (to == ranks - 1 && ranks > 1) || from == 0 ? 0 : from + to; }},
        {"sparse", [](int from, int to, int) { return (from + to) % 3 == 0 ? 0 : 3 * from + to; }},
        {"all zero", [](int, int, int) { return 0; }},
    };
    return patterns;
}

// What this rank sends and expects under a pattern: values tag(from, to, i) of type T, packed in rank order.
template <typename T>
struct Exchange {
    std::vector<T> send, expected;
    std::vector<int> send_counts, recv_counts;

    Exchange(const mpi::Comm& comm, const CountPattern& pattern) {
        const int ranks = comm.size(), me = comm.rank();
        for (int peer = 0; peer < ranks; ++peer) {
            send_counts.push_back(pattern.count(me, peer, ranks));
            for (int i = 0; i < send_counts.back(); ++i) send.push_back(static_cast<T>(tag(me, peer, i)));
            recv_counts.push_back(pattern.count(peer, me, ranks));
            for (int i = 0; i < recv_counts.back(); ++i) expected.push_back(static_cast<T>(tag(peer, me, i)));
        }
    }
};

}  // namespace epmoe::mpi_test
