// What `epmoe train` keeps beside a checkpoint so that `--resume DIR` continues bit for bit: AdamW's moments,
// each rank's own file keyed by the registry's tensor names, and trainer_state.json (the steps done, the seed,
// the data and sampler, the learning-rate schedule, the layout that wrote it). The weights are the checkpoint's
// own safetensors. All of it is written into write_checkpoint's temporary directory (write_extra), so it
// appears with the checkpoint or not at all. The sampler is a function of (seed, step): the step and the seed
// are its whole position. A checkpoint written at one rank count and layout resumes at any other (each rank
// finds its tensors' moments by name in whichever file holds them).
#pragma once

#include <cstdint>
#include <string>

#include "epmoe/base/config.hpp"
#include "epmoe/base/json.hpp"
#include "epmoe/comm/mpi.hpp"
#include "epmoe/train/optim.hpp"

namespace epmoe {

inline constexpr const char* kTrainerStateFile = "trainer_state.json";

// The config to run with: `config` itself, or with train.resume = DIR its weights from DIR (model.path = DIR).
// Fails (on every rank alike) when --model names another directory too. Collective.
Config resume_config(const mpi::Comm& world, const Config& config);

// Fails (Error naming the path) when `dir` exists and is neither an empty folder nor a checkpoint epmoe wrote
// (no epmoe_checkpoint.json): --save never replaces a user's folder. Local: wrap in mpi::all_or_none.
void check_save_dir(const std::string& dir);

// Fails (Error naming the step and the tensor) when a weight of `params` is NaN or Inf: a checkpoint of such
// weights must not replace the last good one. Local.
void check_finite_weights(const ParamRegistry& params, int64_t step);

// Writes, into the checkpoint's temporary directory tmp_dir: this rank's optimizer/rank-RRRRR-of-NNNNN.safetensors
// holding "exp_avg.NAME" and "exp_avg_sq.NAME", F32 [numel], of every tensor of params it is the first holder
// of (held alone, or rank 0 among its replicas: the union of the files holds each tensor once), and on rank 0
// `state` as trainer_state.json. Local I/O (write_checkpoint's write_extra).
void write_train_state(const std::string& tmp_dir, int rank, int num_ranks, const ParamRegistry& params, AdamW& adamw,
                       const Json& state);

// --resume DIR: reads DIR/trainer_state.json, checks that `current` (this run's state at step 0) has the same
// seed and data keys (source, sampler, batch, ctx) and that steps remain before `steps`, restores every
// tensor's moments from DIR/optimizer/ and AdamW's step count. Returns the first step to run. Fails on every
// rank alike, naming DIR and the key or tensor at fault. Collective.
int64_t resume_train_state(const mpi::Comm& world, const std::string& dir, const Json& current, int64_t steps,
                           const ParamRegistry& params, AdamW& adamw);

}  // namespace epmoe
