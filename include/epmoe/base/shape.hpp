// The shape of an MoE stack and how its gate scores experts: plain data every layer of the library shares
// (the config's model.* keys, a checkpoint's config.json, the router, the dispatch).
#pragma once

namespace epmoe {

// How the gate scores experts: softmax over all experts, or sigmoid of each logit.
enum class GateKind { kSoftmax, kSigmoid };

// Sizes and routing settings shared by every layer.
struct ModelShape {
    int num_layers = 0;
    int d_model = 0;
    int d_ff = 0;  // an expert's intermediate size
    int num_experts = 0;
    int top_k = 0;
    GateKind gate = GateKind::kSoftmax;
    bool norm_topk_prob = true;
    double rms_norm_eps = 1e-6;

    // FLOPs of one SwiGLU MLP of intermediate size d_ff on one token: three GEMVs of d_model x d_ff, 2 FLOPs
    // per multiply-add.
    static double mlp_flops_per_token(int d_model, int d_ff) { return 6.0 * d_model * d_ff; }
    // FLOPs of one expert on one token.
    double expert_flops_per_token() const { return mlp_flops_per_token(d_model, d_ff); }
};

}  // namespace epmoe
