// `epmoe eval`: perplexity of the whole model over a token file (or the synthetic batch), windows spread over
// the ranks; eval.json beside the run's results, logits dumped on request.
#pragma once

#include "epmoe/base/config.hpp"
#include "epmoe/base/json.hpp"
#include "epmoe/comm/mpi.hpp"

namespace epmoe {

// Runs the evaluation and writes the results directory on rank 0. Collective. Returns the exit code.
int eval(const mpi::Comm& world, const Config& config);

// The same; returns eval.json's object on rank 0 (null elsewhere), after printing the human summary when
// print_summary. Collective.
Json eval_job(const mpi::Comm& world, const Config& config, bool print_summary);

}  // namespace epmoe
