// `epmoe run`: the main job.
#pragma once

#include "epmoe/base/config.hpp"
#include "epmoe/comm/mpi.hpp"
#include "epmoe/moe/placement.hpp"
#include "epmoe/control/policy.hpp"

namespace epmoe {

// Runs config.workload.steps steps of the MoE stack over all ranks of world and writes the results
// directory on rank 0. Collective. Returns the exit code.
int run(const mpi::Comm& world, const Config& config);

// The same job; returns summary.json's object on rank 0 (null elsewhere). print_summary: print the
// human summary and the results directory on stdout. Collective.
Json run_job(const mpi::Comm& world, const Config& config, bool print_summary);

// The placement of config.placement over world's ranks. Rank 0 reads placement.profile (an earlier run's
// metrics.jsonl) when set and broadcasts it; fails on every rank naming the file when it cannot. Collective.
Placement run_placement(const mpi::Comm& world, const Config& config, int num_experts);

// What a policy needs to know about the job: sizes, the placement's owner map and the seed.
PolicyContext policy_context(const Config& config, const Placement& placement, int num_layers);

}  // namespace epmoe
