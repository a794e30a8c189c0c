// Which tensors each layer of a checkpoint uses: its MLP module and expert layout, told from the tensor names,
// and the list of tensors (with shapes) that checking, listing and loading all go through.
#include <cctype>

#include "checkpoint_internal.hpp"
#include "epmoe/base/error.hpp"

namespace epmoe::checkpoint_detail {
namespace {

bool has(const CheckpointInfo& info, const std::string& name) { return info.weight_map.count(name) > 0; }

TensorSpec spec(std::string name, std::vector<int64_t> shape, Matrix matrix, Mlp mlp = Mlp::kNone, int expert = -1,
                bool fused = false) {
    TensorSpec t;
    t.name = std::move(name);
    t.shape = std::move(shape);
    t.matrix = matrix;
    t.mlp = mlp;
    t.expert = expert;
    t.fused = fused;
    return t;
}

// The three matrices of one SwiGLU MLP of size d_ff under prefix.
void add_swiglu(std::vector<TensorSpec>& out, const std::string& prefix, const SwigluNames& names, int64_t d_model,
                int64_t d_ff, Mlp mlp, int expert) {
    out.push_back(spec(prefix + names.w1, {d_ff, d_model}, Matrix::kW1, mlp, expert));
    out.push_back(spec(prefix + names.w3, {d_ff, d_model}, Matrix::kW3, mlp, expert));
    out.push_back(spec(prefix + names.w2, {d_model, d_ff}, Matrix::kW2, mlp, expert));
}

// The MoE module of layer prefix `layer` ("model.layers.N."): the one whose router is present, else v4's name
// (so that a missing router is reported under the name transformers 4 writes).
std::string moe_module(const CheckpointInfo& info, const Arch& a, const std::string& layer) {
    const char* found = nullptr;
    for (const char* m : a.moe_modules) {
        if (m == nullptr || !has(info, cat(layer, m, ".", a.router))) continue;
        if (found != nullptr) {
            const std::string one = cat(layer, found, ".", a.router), two = cat(layer, m, ".", a.router);
            fail(info.weight_map.at(two), ": tensors ", one, " and ", two,
                 " are both present: a checkpoint holds "
                 "one layout (transformers 4's ",
                 found, " or 5's ", m, ")");
        }
        found = m;
    }
    return found != nullptr ? found : a.moe_modules[0];
}

// The first tensor named "<experts>{e}.*" (per-expert layout), or "".
std::string first_per_expert(const CheckpointInfo& info, const std::string& experts) {
    for (auto it = info.weight_map.lower_bound(experts); it != info.weight_map.end(); ++it) {
        if (!it->first.starts_with(experts)) break;
        if (it->first.size() > experts.size() && std::isdigit(static_cast<unsigned char>(it->first[experts.size()])))
            return it->first;
    }
    return "";
}

}  // namespace

int64_t TensorSpec::numel() const {
    int64_t n = 1;
    for (size_t i = fused ? 1 : 0; i < shape.size(); ++i) n *= shape[i];
    return n;
}

void detect_layer(CheckpointInfo& info, int l) {
    const Arch& a = arch_of(info.family);
    LayerKind& kind = info.layers[l];
    const std::string layer = cat("model.layers.", l, ".");
    if (!kind.moe) {
        kind.module = a.dense_module != nullptr ? a.dense_module : "mlp";
        return;
    }
    kind.module = moe_module(info, a, layer);
    const std::string p = cat(layer, kind.module, ".");
    kind.shared_expert = a.shared_module != nullptr && has(info, cat(p, a.shared_module, ".", a.shared.w1));
    const std::string w13 = cat(p, "experts.", a.fused_w13), w2 = cat(p, "experts.", a.fused_w2);
    const bool has_w13 = has(info, w13), has_w2 = has(info, w2);
    const std::string& fused = has_w13 ? w13 : w2;  // the one present, if any
    const std::string per_expert = first_per_expert(info, p + "experts.");
    if ((has_w13 || has_w2) && !per_expert.empty())
        fail(info.weight_map.at(fused), ": layer ", l, " holds both fused experts (", fused,
             ") and per-expert tensors (", per_expert, "): a checkpoint holds one layout");
    if (has_w13 != has_w2)
        fail(info.weight_map.at(fused), ": tensor ", fused, " has no ", has_w13 ? w2 : w13,
             " beside it: fused experts come as a pair (transformers 5's gate_up_proj and down_proj)");
    kind.fused_experts = has_w13;
}

std::vector<TensorSpec> layer_tensors(const CheckpointInfo& info, int l, const std::function<bool(int)>& owns) {
    const Arch& a = arch_of(info.family);
    const LayerKind& kind = info.layers[l];
    const int64_t d_model = info.shape.d_model, d_ff = info.shape.d_ff, num_experts = info.shape.num_experts;
    const std::string p = info.mlp_prefix(l);
    std::vector<TensorSpec> out;
    out.push_back(spec(cat("model.layers.", l, ".", a.norm), {d_model}, Matrix::kNorm));
    if (!kind.moe) {
        add_swiglu(out, p, a.dense, d_model, info.dense_d_ff, Mlp::kDense, -1);
        return out;
    }
    out.push_back(spec(p + a.router, {num_experts, d_model}, Matrix::kRouter));
    for (int e = 0; e < info.shape.num_experts; ++e) {
        if (!owns(e)) continue;
        if (!kind.fused_experts) {
            add_swiglu(out, cat(p, "experts.", e, "."), a.expert, d_model, d_ff, Mlp::kExpert, e);
            continue;
        }
        out.push_back(spec(cat(p, "experts.", a.fused_w13), {num_experts, 2 * d_ff, d_model}, Matrix::kW13,
                           Mlp::kExpert, e, true));
        out.push_back(
            spec(cat(p, "experts.", a.fused_w2), {num_experts, d_model, d_ff}, Matrix::kW2, Mlp::kExpert, e, true));
    }
    if (kind.shared_expert) {
        add_swiglu(out, cat(p, a.shared_module, "."), a.shared, d_model, info.shared_d_ff, Mlp::kShared, -1);
        out.push_back(spec(p + a.shared_gate, {1, d_model}, Matrix::kSharedGate));
    }
    return out;
}

}  // namespace epmoe::checkpoint_detail
