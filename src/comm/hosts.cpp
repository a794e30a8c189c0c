#include "epmoe/comm/hosts.hpp"

#include <span>

namespace epmoe::mpi {

std::vector<int> host_leaders(const Comm& comm) {
    std::vector<int> leaders(comm.size(), 0);
    leaders[comm.rank()] = allreduce_one(comm.split_shared(), comm.rank(), Op::kMin);
    allreduce(comm, std::span<int>(leaders), Op::kSum);
    return leaders;
}

}  // namespace epmoe::mpi
