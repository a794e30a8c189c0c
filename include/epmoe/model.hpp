// The weights of an MoE stack as one rank holds them: every layer's gate and norm, and only the
// experts this rank owns. Pure data; no MPI.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "epmoe/compute.hpp"
#include "epmoe/config.hpp"

namespace epmoe {

// Sizes and routing settings shared by every layer.
struct ModelShape {
    int num_layers = 0;
    int d_model = 0;
    int d_ff = 0;
    int num_experts = 0;
    int top_k = 0;
    GateKind gate = GateKind::kSoftmax;
    bool norm_topk_prob = true;
    double rms_norm_eps = 1e-6;

    static ModelShape from_config(const ModelConfig& m);
    // FLOPs of one expert on one token: three GEMVs of d_model x d_ff, 2 FLOPs per multiply-add.
    double expert_flops_per_token() const { return 6.0 * d_model * d_ff; }
};

// One SwiGLU expert: y = W2 · (silu(W1 · x) ⊙ (W3 · x)).
struct ExpertWeights {
    std::vector<float> w13;  // [2 * d_ff, d_model]: rows [0, d_ff) are W1 (gate_proj), [d_ff, 2 d_ff) W3 (up_proj)
    std::vector<float> w2;   // [d_model, d_ff] (down_proj)
    // The kernel's own form of the weights (e.g. BF16, or reordered for its GEMM), set by MlpKernel::prepare;
    // null when the kernel reads w13 and w2. A kernel that sets it may empty w13 and w2.
    std::shared_ptr<const void> prepared;
    uint64_t prepared_bytes = 0;  // bytes held by `prepared`
};

// A SwiGLU MLP every rank holds whole: a dense layer's `mlp`, or Qwen2-MoE's shared expert.
struct DenseMlp {
    int d_ff = 0;         // its intermediate size
    ExpertWeights w;      // w13 [2 * d_ff, d_model], w2 [d_model, d_ff]
};

struct MoeLayer {
    std::vector<float> gate;              // [num_experts, d_model]; empty for a dense layer
    std::vector<float> norm;              // [d_model] RMSNorm weight g
    std::map<int, ExpertWeights> experts;  // owned experts only, by global expert id
    std::optional<DenseMlp> dense;        // set: a dense layer (no gate, no dispatch) running this MLP
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
};

}  // namespace epmoe
