// The routed experts of a host in one MPI-3 shared window, so that every rank of the host can run any of them
// (resources.work_sharing = host: the ranks of a host run row blocks of each other's experts when their own are
// done, moe/dispatch_shared.cpp).
#pragma once

#include <cstdint>

#include "epmoe/comm/mpi.hpp"
#include "epmoe/model/model.hpp"

namespace epmoe {

// Each rank copies its experts' prepared weights (MlpKernel::arrays, every layer) into its segment of one shared
// window over the ranks of its host, then drops its private copies: model.layers[l].experts become views into
// the window (the same bytes, read in place), and model.layers[l].host_experts views of every expert of the host.
// Dense MLPs and shared experts stay private. Collective over comm; the window lives as long as a view of it.
void share_experts_on_host(const mpi::Comm& comm, Model& model);

// The bytes share_experts_on_host puts in this rank's host's window (every rank of the host's experts, every
// layer). Collective over comm.
uint64_t host_expert_bytes(const mpi::Comm& comm, const Model& model);

}  // namespace epmoe
