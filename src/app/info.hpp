// `epmoe info`: what this machine and job see.
#pragma once

#include "epmoe/base/config.hpp"
#include "epmoe/comm/mpi.hpp"

namespace epmoe {

// Prints ranks and hosts, the hwloc topology and bindings, MPI, BLAS and energy sources (text or JSON)
// on rank 0. Collective over world. Returns the exit code.
int info(const mpi::Comm& world, const Config& config, bool json);

}  // namespace epmoe
