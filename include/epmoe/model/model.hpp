// The weights of an MoE stack as one rank holds them: every layer's gate and norm, and only the
// experts this rank owns. Pure data; no MPI.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "epmoe/base/shape.hpp"
#include "epmoe/ops/mlp_kernel.hpp"
#include "epmoe/ops/swiglu.hpp"

namespace epmoe {

struct MoeLayer {
    std::vector<float> gate;               // [num_experts, d_model]; empty for a dense layer
    std::vector<float> norm;               // [d_model] RMSNorm weight g
    std::map<int, ExpertWeights> experts;  // owned experts only, by global expert id
    // Every expert of this rank's host, views into a shared window (model/host_experts.hpp); empty where not shared.
    std::map<int, ExpertWeights> host_experts;
    std::optional<DenseMlp> dense;          // set: a dense layer (no gate, no dispatch) running this MLP
    std::optional<DenseMlp> shared_expert;  // Qwen2-MoE: added as sigmoid(shared_expert_gate · x) * mlp(x)
    std::vector<float> shared_expert_gate;  // [d_model] when shared_expert is set
};

struct Model {
    ModelShape shape;
    std::vector<MoeLayer> layers;  // [num_layers]
    // Runs every MLP of the model; the loaders have called its prepare() on every one.
    std::shared_ptr<const MlpKernel> kernel = default_mlp_kernel();
    // Bytes of weights this rank holds.
    uint64_t weight_bytes() const;
    // Bytes of the routed experts this rank owns (the rest of weight_bytes() every rank holds alike).
    uint64_t expert_bytes() const;
};

}  // namespace epmoe
