// main() of every MPI test binary: one MPI session, only rank 0 prints its progress, and the exit code is the
// maximum over ranks, so a failure on any rank fails the test. The other ranks print their failed assertions
// only (prefixed "[rank r]"), so a failure seen on rank 2 alone still says what failed.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "epmoe/comm/mpi.hpp"

namespace {

// Prints each failed assertion of this rank on stderr, with the rank and the test's name.
class FailurePrinter : public testing::EmptyTestEventListener {
public:
    explicit FailurePrinter(int rank) : rank_(rank) {}
    // The name is kept here: current_test_info() would take the lock that OnTestPartResult's caller holds.
    void OnTestStart(const testing::TestInfo& test) override {
        test_ = std::string(test.test_suite_name()) + "." + test.name();
    }
    void OnTestPartResult(const testing::TestPartResult& result) override {
        if (!result.failed()) return;
        std::fprintf(stderr, "[rank %d] %s: %s:%d: failure\n%s\n", rank_, test_.c_str(),
                     result.file_name() ? result.file_name() : "?", result.line_number(), result.message());
    }

private:
    int rank_;
    std::string test_;
};

}  // namespace

int main(int argc, char** argv) {
    testing::InitGoogleTest(&argc, argv);
    epmoe::mpi::Session session(&argc, &argv);
    int failed = 0;
    {
        epmoe::mpi::Comm world(MPI_COMM_WORLD);
        if (world.rank() != 0) {
            auto& listeners = testing::UnitTest::GetInstance()->listeners();
            delete listeners.Release(listeners.default_result_printer());
            listeners.Append(new FailurePrinter(world.rank()));
        }
        failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
        failed = epmoe::mpi::allreduce_one(world, failed, epmoe::mpi::Op::kMax);
        if (failed && world.rank() == 0) std::fprintf(stderr, "a test failed on at least one rank\n");
    }
    return failed;
}
