// Pieces of the checkpoint loader shared by its source files (not a public API).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "epmoe/model/checkpoint.hpp"

namespace epmoe::checkpoint_detail {

// What the loader does with a tensor.
enum class Matrix {
    kNorm,        // the layer's RMSNorm weight
    kRouter,      // the router (gate) weight
    kSharedGate,  // Qwen2-MoE's shared_expert_gate
    kW1,          // an MLP's gate_proj: the first half of w13
    kW3,          // an MLP's up_proj: the second half of w13
    kW13,         // an expert's W1 then W3 rows, from a fused gate_up_proj
    kW2,          // an MLP's down_proj; the last matrix of each MLP
};

// The MLP a W matrix belongs to.
enum class Mlp { kNone, kExpert, kDense, kShared };

// One tensor a layer reads, or, when fused, the slice of expert `expert` (row `expert` of dim 0).
struct TensorSpec {
    std::string name;            // the full Hugging Face name
    std::vector<int64_t> shape;  // the whole tensor's shape, as the file's header must give it
    Matrix matrix = Matrix::kNorm;
    Mlp mlp = Mlp::kNone;
    int expert = -1;     // Mlp::kExpert: the routed expert
    bool fused = false;  // read rows [expert, expert + 1) of dim 0 only

    // Elements read from a tensor of this shape.
    int64_t numel() const;
};

// Every tensor layer `l` uses on a rank owning the experts with owns(e), in reading order: the norm, then the
// gate, each owned expert (W1, W3, W2; or its W13 and W2 slices), the shared expert and its gate, or the dense
// MLP. Names from the family's Arch table, shapes from info.shape and its dense and shared sizes.
std::vector<TensorSpec> layer_tensors(const CheckpointInfo& info, int l, const std::function<bool(int)>& owns);

// Fills info.layers[l]'s module, fused_experts and shared_expert from the tensor names of info.weight_map
// (layers[l].moe already set). Fails naming the file and the tensors when a layer holds both expert layouts,
// half of a fused pair, or Mixtral's router under both block_sparse_moe and mlp.
void detect_layer(CheckpointInfo& info, int l);

// Fills info's family, shape, dense_d_ff, shared_d_ff and layers from a Hugging Face config.json (either
// generation, transformers 4 or 5) and the tensor names of info.weight_map. Fails naming the file and the
// key (missing, mistyped, unknown model_type, expert counts that disagree).
void apply_hf_config(const std::string& config_path, CheckpointInfo& info);

// The same from epmoe's model.* keys, for a single .safetensors file with no config.json: the family and the
// layer count come from the tensor names of info.weight_map.
void apply_model_config(const ModelConfig& m, CheckpointInfo& info);

}  // namespace epmoe::checkpoint_detail
