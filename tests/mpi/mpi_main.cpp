// main() of every MPI test binary: one MPI session, only rank 0 prints, and the exit code is the
// maximum over ranks, so a failure on any rank fails the test.
#include <gtest/gtest.h>

#include "epmoe/comm/mpi.hpp"

int main(int argc, char** argv) {
    testing::InitGoogleTest(&argc, argv);
    epmoe::mpi::Session session(&argc, &argv);
    int failed = 0;
    {
        epmoe::mpi::Comm world(MPI_COMM_WORLD);
        if (world.rank() != 0) {
            auto& listeners = testing::UnitTest::GetInstance()->listeners();
            delete listeners.Release(listeners.default_result_printer());
        }
        failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
        failed = epmoe::mpi::allreduce_one(world, failed, epmoe::mpi::Op::kMax);
        if (failed && world.rank() == 0) std::fprintf(stderr, "a test failed on at least one rank\n");
    }
    return failed;
}
