#include <gtest/gtest.h>
#include "epmoe/comm/mpi.hpp"
TEST(Mpi, Size) { epmoe::mpi::Comm c(MPI_COMM_WORLD); EXPECT_GE(c.size(), 1); }
