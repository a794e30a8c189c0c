// config.json of a Hugging Face MoE checkpoint -> CheckpointInfo: family, sizes, routing settings and
// which layers are MoE, dense or carry a shared expert. Defaults follow HF's configuration classes.
#include <cmath>
#include <fstream>

#include "checkpoint_internal.hpp"
#include "epmoe/base/error.hpp"

namespace epmoe::checkpoint_detail {
namespace {

const Arch& arch_from(const HfConfig& c) {
    const Json& v = c.need("model_type");
    const std::string type = v.is_string() ? v.get<std::string>() : v.dump();
    const Arch* a = arch_for_model_type(type);
    if (a == nullptr)
        fail(c.path(), ": model_type \"", type, "\" is not supported (mixtral, olmoe, qwen2_moe, qwen3_moe)");
    return *a;
}

// The expert count: the family's key, or the other generation's (transformers 5 writes Qwen3-MoE's as
// num_local_experts, 4 wrote num_experts). Both present must agree.
int expert_count(const HfConfig& c, const Arch& a) {
    const char* other = std::string(a.experts_key) == "num_experts" ? "num_local_experts" : "num_experts";
    if (!c.has(a.experts_key) && !c.has(other))
        fail(c.path(), ": missing key '", a.experts_key, "' (or '", other, "'): the number of experts");
    if (!c.has(other)) return c.integer(a.experts_key);
    if (!c.has(a.experts_key)) return c.integer(other);
    if (c.integer(a.experts_key) != c.integer(other))
        fail(c.path(), ": keys '", a.experts_key, "' = ", c.integer(a.experts_key), " and '", other,
             "' = ", c.integer(other), " disagree: both name the number of experts");
    return c.integer(a.experts_key);
}

}  // namespace

// Keys transformers 5 adds or renames beside those read here (rope_parameters for rope_theta, head_dim: null,
// layer_types, dtype for torch_dtype) shape attention or storage, which `epmoe run` does not compute, and pass.
void apply_hf_config(const std::string& config_path, CheckpointInfo& info) {
    HfConfig c(config_path);
    const Arch& a = arch_from(c);
    info.config_path = config_path;
    info.family = a.family;
    ModelShape& s = info.shape;
    s.num_layers = c.integer("num_hidden_layers");
    s.d_model = c.integer("hidden_size");
    s.d_ff = c.integer(a.d_ff_key);
    s.num_experts = expert_count(c, a);
    s.top_k = c.integer("num_experts_per_tok");
    if (s.top_k > s.num_experts)
        fail(config_path, ": key 'num_experts_per_tok' = ", s.top_k, " is more than the ", s.num_experts, " experts");
    s.gate = GateKind::kSoftmax;
    // Mixtral always renormalises; HF's OlmoeConfig, Qwen2MoeConfig and Qwen3MoeConfig default to false.
    s.norm_topk_prob = a.always_norm_topk ? true : c.boolean_or("norm_topk_prob", false);
    s.rms_norm_eps = c.positive("rms_norm_eps");
    // HF's Qwen MoE decoder layer: MoE iff not in mlp_only_layers and (idx + 1) % decoder_sparse_step == 0.
    const std::vector<int> mlp_only = a.sparse_step ? c.int_list_or_empty("mlp_only_layers") : std::vector<int>{};
    const int step = a.sparse_step ? c.integer_or("decoder_sparse_step", 1) : 1;
    info.layers.assign(s.num_layers, LayerKind{});
    for (int l = 0; l < s.num_layers; ++l) {
        LayerKind& kind = info.layers[l];
        kind.moe = (l + 1) % step == 0 && std::find(mlp_only.begin(), mlp_only.end(), l) == mlp_only.end();
        detect_layer(info, l);
        if (!kind.moe) info.dense_d_ff = c.integer("intermediate_size");
        if (kind.shared_expert) info.shared_d_ff = c.integer("shared_expert_intermediate_size");
    }
}

void apply_model_config(const ModelConfig& m, CheckpointInfo& info) {
    info.config_path = "the model.* config keys";
    const std::string mixtral_gate = ".block_sparse_moe.gate.weight", mlp_gate = ".mlp.gate.weight";
    int num_layers = 0;
    bool mixtral = false;
    for (const auto& [name, file] : info.weight_map) {
        int layer = -1;
        if (std::sscanf(name.c_str(), "model.layers.%d.", &layer) != 1 || layer < 0) continue;
        if (name.ends_with(mixtral_gate)) mixtral = true;
        if (name.ends_with(mixtral_gate) || name.ends_with(mlp_gate)) num_layers = std::max(num_layers, layer + 1);
    }
    if (num_layers == 0)
        fail(info.path,
             ": no model.layers.N.block_sparse_moe.gate.weight or model.layers.N.mlp.gate.weight tensor, "
             "and no config.json beside it");
    info.family = mixtral ? Family::kMixtral : Family::kOlmoe;
    info.shape = static_cast<const ModelShape&>(m);
    info.shape.num_layers = num_layers;
    info.layers.assign(num_layers, LayerKind{});
    for (int l = 0; l < num_layers; ++l) {
        detect_layer(info, l);
        if (!info.weight_map.count(info.mlp_prefix(l) + arch_of(info.family).router))
            fail(info.path, ": missing tensor ", info.mlp_prefix(l), arch_of(info.family).router);
    }
}

}  // namespace epmoe::checkpoint_detail
