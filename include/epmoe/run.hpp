// `epmoe run`: the main job.
#pragma once

#include "epmoe/config.hpp"
#include "epmoe/mpi.hpp"

namespace epmoe {

// Runs config.workload.steps steps of the MoE stack over all ranks of world and writes the results
// directory on rank 0. Collective. Returns the exit code.
int run(const mpi::Comm& world, const Config& config);

}  // namespace epmoe
