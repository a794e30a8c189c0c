// Pieces of the checkpoint loader shared by its source files (not a public API).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "epmoe/model/checkpoint.hpp"

namespace epmoe::checkpoint_detail {

// True if the checkpoint holds a tensor of this name.
using HasTensor = std::function<bool(const std::string&)>;

// Fills info's family, shape, dense_d_ff, shared_d_ff and layers from a Hugging Face config.json.
// Fails naming the file and the key (missing, mistyped, unknown model_type).
void apply_hf_config(const std::string& config_path, CheckpointInfo& info, const HasTensor& has_tensor);

// The same from epmoe's model.* keys, for a single .safetensors file with no config.json: the family and
// the layer count come from the tensor names. names: every tensor of the file.
void apply_model_config(const ModelConfig& m, const std::vector<std::string>& names, CheckpointInfo& info,
                        const HasTensor& has_tensor);

}  // namespace epmoe::checkpoint_detail
