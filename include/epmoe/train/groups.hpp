// The communicators of DP x EP training (`epmoe train --ep-size N`): the world's P ranks form P / N groups of N
// consecutive ranks. The experts of every MoE layer are sharded over each group (the same Placement inside
// each, over N ranks) and tokens are exchanged only inside a group; each group is a data-parallel replica.
// Gradients of replicated weights are summed over the world, an expert's over its replicas: the P / N ranks
// that hold the same position in every group, and so the same experts.
#pragma once

#include "epmoe/comm/mpi.hpp"

namespace epmoe {

class TrainGroups {
public:
    // ep_size: N, the ranks of a group; 0 = world.size() (pure expert parallelism, one group). Fails on every
    // rank alike (AgreedError naming train.ep_size and its value) unless N > 0 divides world.size().
    // Collective over world (two MPI_Comm_split).
    TrainGroups(const mpi::Comm& world, int ep_size);

    const mpi::Comm& world() const { return world_; }
    // This rank's group: world ranks group() * N .. group() * N + N - 1, in world order (rank = position).
    const mpi::Comm& ep() const { return ep_; }
    // The replicas of this rank's experts: world ranks position + g * N for g = 0 .. dp_size - 1, in world order.
    const mpi::Comm& expert_replicas() const { return replicas_; }
    int ep_size() const { return ep_.size(); }        // N
    int dp_size() const { return replicas_.size(); }  // P / N: data-parallel replicas
    int group() const { return world_.rank() / ep_.size(); }

private:
    const mpi::Comm& world_;
    mpi::Comm ep_, replicas_;
};

}  // namespace epmoe
