// `epmoe run`: the main job.
#pragma once

#include "epmoe/base/config.hpp"
#include "epmoe/base/json.hpp"
#include "epmoe/comm/mpi.hpp"

namespace epmoe {

// Runs config.workload.steps steps of the MoE stack over all ranks of world and writes the results
// directory on rank 0. Collective. Returns the exit code.
int run(const mpi::Comm& world, const Config& config);

// The same job; returns summary.json's object on rank 0 (null elsewhere). print_summary: print the
// human summary and the results directory on stdout. Collective.
Json run_job(const mpi::Comm& world, const Config& config, bool print_summary);

}  // namespace epmoe
