// Writing a Hugging Face checkpoint of a whole model from every rank's part of it: config.json (the family's
// model_type and the keys transformers 4 and 5 read), safetensors shards in the family's tensor names (the Arch
// tables, through the same tensor lists the loader reads) and model.safetensors.index.json. Each rank writes its
// own experts into its own shard; rank 0 writes the replicated tensors too. The directory appears under its
// final name only once every rank has written (a temporary name, renamed by rank 0), so a killed run never
// leaves a directory that looks whole. The ranks must share the file system that holds the directory.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "epmoe/comm/mpi.hpp"
#include "epmoe/io/safetensors.hpp"
#include "epmoe/model/arch.hpp"
#include "epmoe/model/decoder.hpp"
#include "epmoe/model/model.hpp"

namespace epmoe {

// The file in every directory write_checkpoint makes: what marks it as epmoe's, so that it may be replaced.
inline constexpr const char* kCheckpointMarker = "epmoe_checkpoint.json";

// What config.json says beside the model's shape.
struct CheckpointWriteOptions {
    std::optional<double> router_aux_loss_coef;  // unset: the family's transformers default (OLMoE 0.01, else 0.001)
    int max_position_embeddings = 4096;          // the positions RoPE is meant for (epmoe does not limit them)
    std::vector<int32_t> eos_token_ids;          // config.json's eos_token_id: none (null), one or a list
    int32_t pad_token_id = -1;                   // -1: null
    int32_t bos_token_id = -1;                   // -1: null
    // Run on every rank after the shards are written and before the rename, with the temporary directory's
    // path: more files that must appear with the checkpoint or not at all (epmoe train's optimizer state).
    // Local work only (no collective); an Error on any rank fails the write on every rank. Unset: nothing.
    std::function<void(const std::string& tmp_dir)> write_extra;
};

// Writes the model as a Hugging Face checkpoint directory `dir` (collective over comm):
//   config.json                              rank 0, from model.shape (and shape.decoder), family and options
//   model-0000i-of-0000N.safetensors         F32; shard i of the N ranks that hold tensors to write, in rank
//                                            order: rank 0's holds every replicated tensor (norms, routers,
//                                            dense and shared MLPs, attention, embeddings, LM head) and each
//                                            rank's the experts it is the lowest rank to hold
//   model.safetensors.index.json             rank 0: total_size and the weight_map of every tensor
//   epmoe_checkpoint.json                    rank 0: the marker (writer, family, ranks)
// into `dir`.tmp first; after every rank has written, rank 0 renames it `dir` (an existing epmoe checkpoint
// there is replaced: renamed `dir`.old, then removed). Every rank passes the same shape, family, decoder and
// layer kinds, and its own experts (model.layers[l].experts; w13 and w2 in FP32: a kernel that keeps only its
// own form cannot be written). Fails on every rank alike (mpi::all_or_none: AgreedError) when `dir` exists and
// is not an epmoe checkpoint, when the model does not fit the family (a dense layer or a shared expert it has
// no keys for, head_dim != d_model / num_heads where the family has no head_dim key, biases it has no key for,
// a sliding window outside Mixtral), when an expert is held by no rank, and on any I/O error.
void write_checkpoint(const mpi::Comm& comm, const std::string& dir, Family family, const Model& model,
                      const DecoderWeights& decoder, const CheckpointWriteOptions& options = {});

// The tensors write_checkpoint would put in this rank's shard, F32 under the family's Hugging Face names: the
// experts it is the lowest rank to hold and, on rank 0, every replicated tensor (so the union over the ranks
// holds each tensor once). Any Model/DecoderWeights-shaped values will do, e.g. gradients (--dump-grads).
// Collective over comm; fails on every rank alike as write_checkpoint does.
std::vector<TensorToWrite> checkpoint_tensors(const mpi::Comm& comm, Family family, const Model& model,
                                              const DecoderWeights& decoder);

}  // namespace epmoe
