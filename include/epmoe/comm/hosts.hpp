// Which ranks of a communicator share a host (MPI_COMM_TYPE_SHARED), as every rank sees it.
#pragma once

#include <vector>

#include "epmoe/comm/mpi.hpp"

namespace epmoe::mpi {

// [comm size] the lowest rank of comm on each rank's host, on every rank. Collective over comm.
std::vector<int> host_leaders(const Comm& comm);

}  // namespace epmoe::mpi
