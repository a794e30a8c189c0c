// Checkpoint::load: converts to float only the tensors a rank uses (norm, gate, shared and dense parts,
// and its own experts), so a rank's weight memory is its shard.
#include "epmoe/model/checkpoint.hpp"
#include "epmoe/base/error.hpp"

namespace epmoe {
namespace {

// Reads one tensor whole into out (resized to its element count).
void read_into(const Checkpoint& ck, const std::string& name, std::vector<float>& out) {
    auto [file, t] = ck.find(name);
    out.resize(static_cast<size_t>(t->numel()));
    file->read_f32(*t, out);
}

// A SwiGLU MLP under prefix: w13 = [W1; W3] ([2 d_ff, d_model]), w2 = W2 ([d_model, d_ff]), prepared for
// kernel.
ExpertWeights read_swiglu(const Checkpoint& ck, const std::string& prefix, bool mixtral, const MlpKernel& kernel,
                          int d_model, int d_ff) {
    ExpertWeights w;
    std::vector<float> w3;
    read_into(ck, prefix + (mixtral ? "w1.weight" : "gate_proj.weight"), w.w13);
    read_into(ck, prefix + (mixtral ? "w3.weight" : "up_proj.weight"), w3);
    w.w13.insert(w.w13.end(), w3.begin(), w3.end());
    read_into(ck, prefix + (mixtral ? "w2.weight" : "down_proj.weight"), w.w2);
    kernel.prepare(w, d_model, d_ff);
    return w;
}

}  // namespace

Model Checkpoint::load(int first, int last, const std::function<bool(int)>& owns,
                       std::shared_ptr<const MlpKernel> kernel) const {
    const CheckpointInfo& info = info_;
    const bool mixtral = info.family == Family::kMixtral;
    Model model;
    model.shape = info.shape;
    model.shape.num_layers = last - first + 1;
    model.kernel = std::move(kernel);
    const MlpKernel& k = *model.kernel;
    const int d = info.shape.d_model;
    for (int l = first; l <= last; ++l) {
        MoeLayer& layer = model.layers.emplace_back();
        const std::string p = info.mlp_prefix(l);
        read_into(*this, cat("model.layers.", l, ".post_attention_layernorm.weight"), layer.norm);
        if (!info.layers[l].moe) {
            layer.dense = DenseMlp{info.dense_d_ff, read_swiglu(*this, p, false, k, d, info.dense_d_ff)};
            continue;
        }
        read_into(*this, p + "gate.weight", layer.gate);
        for (int e = 0; e < info.shape.num_experts; ++e)
            if (owns(e)) layer.experts[e] = read_swiglu(*this, cat(p, "experts.", e, "."), mixtral, k, d, info.shape.d_ff);
        if (info.layers[l].shared_expert) {
            layer.shared_expert = DenseMlp{info.shared_d_ff, read_swiglu(*this, p + "shared_expert.", false, k, d, info.shared_d_ff)};
            read_into(*this, p + "shared_expert_gate.weight", layer.shared_expert_gate);
        }
    }
    return model;
}

}  // namespace epmoe
