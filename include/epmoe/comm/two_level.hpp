// The two-level alltoallv between hosts (Tutel's 2D hierarchical all-to-all): the ranks of each host first
// regroup their rows inside the host, each rank collecting what its host sends to the ranks of the same local
// index on every host; then one message from each rank to its counterpart on each other host. A rank sends
// (ranks a host - 1) + (hosts - 1) messages instead of (ranks - 1): fewer, larger messages on the network.
#pragma once

#include <mpi.h>

#include <vector>

#include "epmoe/comm/mpi.hpp"
#include "epmoe/sim/sim.hpp"

namespace epmoe::mpi {

class TwoLevelExchange {
public:
    // The host and lane (same local index on every host) communicators of comm. Every host must hold the same
    // number of ranks, consecutive in comm (as mpirun's --map-by core/slot and `epmoe simulate` place them);
    // fails naming the layout otherwise. Collective over comm.
    explicit TwoLevelExchange(const Comm& comm);

    // The alltoallv of alltoallv_raw (each peer's block packed in rank order on both sides) of MPI_FLOAT rows,
    // in two levels; the same result. Collective over comm.
    void alltoallv(const float* send, const std::vector<int>& send_counts, float* recv,
                   const std::vector<int>& recv_counts);

    int ranks_per_host() const { return host_.size(); }

private:
    Comm host_, lane_;
    sim::TokenBuffer staged_, regrouped_;  // the rows between the levels
};

}  // namespace epmoe::mpi
