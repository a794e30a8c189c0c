// `epmoe generate`: continues prompts with the whole model and a KV cache per sequence.
#pragma once

#include "epmoe/base/config.hpp"
#include "epmoe/base/json.hpp"
#include "epmoe/comm/mpi.hpp"

namespace epmoe {

// Runs the generation and writes the results directory on rank 0. Collective. Returns the exit code.
int generate(const mpi::Comm& world, const Config& config);

// The same; returns the "generate" figures on rank 0 (null elsewhere). Collective.
Json generate_job(const mpi::Comm& world, const Config& config, bool print_summary);

}  // namespace epmoe
