// `epmoe train --dump-grads FILE` (a checking hook) and `--sampler sequential`: the first step's gradients in one
// safetensors file under the Hugging Face names, comparable tensor by tensor with transformers' autograd
// (tests/fixtures/models/*/grads.safetensors); and the batch made of a token file's rows in order.
#pragma once

#include <string>
#include <vector>

#include "app/train_data.hpp"
#include "epmoe/comm/mpi.hpp"
#include "epmoe/model/arch.hpp"
#include "epmoe/model/checkpoint.hpp"
#include "epmoe/train/decoder_train.hpp"

namespace epmoe {

// Writes `path` on rank 0: every gradient of grads (after the sum over replicas, before clipping), F32 under
// the family's Hugging Face names (each rank's experts gathered to rank 0, each tensor once), plus the scalars
// lm_loss and aux_loss (unscaled), F32 [1]. With a source checkpoint, its MoE blocks' names: its module, and
// where its experts are fused (transformers 5's runtime layout) the fused gate_up_proj and down_proj gradients.
// Collective; fails on every rank alike.
void dump_gradients(const mpi::Comm& world, const std::string& path, Family family, const CheckpointInfo* source,
                    const ModelGrads& grads, const TrainLosses& losses);

// This rank's share of step `step`'s global batch: train.sampler random (sample_batch: seeded windows) or
// sequential (sequential_batch). Pure compute.
std::vector<TrainSequence> step_batch(const TrainData& data, const Config& config, int64_t step, int rank,
                                      int num_ranks);

// The sequential sampler: the stream cut into rows of ctx tokens (a [B, S] file's rows when S = ctx), global
// batch item b of step `step` is row (step * batch + b) mod rows, ids the row and targets the row shifted by one
// (the last kIgnoreIndex), as Hugging Face computes labels = input_ids; this rank's share of the items in order.
std::vector<TrainSequence> sequential_batch(const std::vector<int32_t>& stream, int64_t ctx, int batch, int64_t step,
                                            int rank, int num_ranks);

// Fails (Error naming the file) when train.sampler is sequential and train.data is a [B, S] file whose rows
// are not --ctx tokens long. Local: wrap in mpi::all_or_none.
void check_sequential_data(const Config& config, int vocab_size);

}  // namespace epmoe
