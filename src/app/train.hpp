// `epmoe train`: trains the whole model (a checkpoint to fine-tune, or the synthetic shape from scratch) with the
// experts sharded over the ranks and each rank's share of every global batch.
#pragma once

#include "epmoe/base/config.hpp"
#include "epmoe/comm/mpi.hpp"

namespace epmoe {

// Runs config.train.steps steps and writes the results directory (train_log.jsonl, config.json, summary.json)
// on rank 0, and the checkpoint when train.save_dir is set. Collective. Returns the exit code.
int train(const mpi::Comm& world, const Config& config);

}  // namespace epmoe
