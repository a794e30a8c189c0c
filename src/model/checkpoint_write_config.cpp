// What write_checkpoint writes beside the tensors: the CheckpointInfo the loader will build from the written
// files (layer kinds, sizes, module names), checked against what the family's config.json can say, and that
// config.json itself, with the keys of transformers 4 and 5 (tests/fixtures/models/*/config.json, written by
// transformers 5.17, are the pattern).
#include "checkpoint_internal.hpp"
#include "epmoe/base/error.hpp"

namespace epmoe::checkpoint_detail {
namespace {

// The sizes of the dense layers' and shared experts' MLPs: one value each over the whole model.
void mlp_sizes(const Model& model, const Arch& a, CheckpointInfo& info) {
    for (size_t l = 0; l < model.layers.size(); ++l) {
        const MoeLayer& layer = model.layers[l];
        LayerKind& kind = info.layers[l];
        kind.moe = !layer.dense.has_value();
        kind.shared_expert = layer.shared_expert.has_value();
        kind.module = kind.moe ? a.moe_modules[0] : a.dense_module != nullptr ? a.dense_module : "mlp";
        if (!kind.moe && (a.dense_module == nullptr || !a.sparse_step))
            fail("layer ", l, " is dense: ", family_name(a.family), " has no dense layers (mlp_only_layers)");
        if (kind.shared_expert && a.shared_module == nullptr)
            fail("layer ", l, " has a shared expert: ", family_name(a.family), " has none");
        const int dense = kind.moe ? 0 : layer.dense->d_ff, shared = kind.shared_expert ? layer.shared_expert->d_ff : 0;
        if (dense > 0 && info.dense_d_ff > 0 && dense != info.dense_d_ff)
            fail("layer ", l, "'s dense MLP has intermediate size ", dense, ", another ", info.dense_d_ff,
                 ": config.json has one intermediate_size");
        if (shared > 0 && info.shared_d_ff > 0 && shared != info.shared_d_ff)
            fail("layer ", l, "'s shared expert has intermediate size ", shared, ", another ", info.shared_d_ff,
                 ": config.json has one shared_expert_intermediate_size");
        if (dense > 0) info.dense_d_ff = dense;
        if (shared > 0) info.shared_d_ff = shared;
    }
}

// The decoder's features the family's config.json can express, and its biases as weight_map entries (so that
// decoder_tensors lists them as it does for a checkpoint that holds them).
void decoder_fit(const DecoderWeights& decoder, const Arch& a, CheckpointInfo& info) {
    const DecoderShape& s = info.shape.decoder;
    const char* family = family_name(a.family);
    if (s.qk_norm != a.qk_norm) fail("the decoder's q/k norms are not those of ", family);
    if (s.sliding_window > 0 && a.family != Family::kMixtral)
        fail("sliding window ", s.sliding_window, ": only mixtral's config.json has one for every layer");
    const bool head_dim_key = a.family == Family::kMixtral || a.family == Family::kQwen3Moe;
    if (!head_dim_key && s.head_dim * s.num_heads != info.shape.d_model)
        fail("head_dim ", s.head_dim, " x ", s.num_heads, " heads != d_model ", info.shape.d_model, ": ", family,
             "'s config.json has no head_dim");
    for (size_t l = 0; l < decoder.layers.size(); ++l) {
        const AttentionWeights& w = decoder.layers[l];
        const bool qkv = !w.bq.empty(), o = !w.bo.empty();
        if (qkv != !decoder.layers[0].bq.empty() || o != !decoder.layers[0].bo.empty())
            fail("layer ", l, "'s attention biases differ from layer 0's: config.json says it for all layers");
        const bool fits = a.family == Family::kMixtral    ? !qkv && !o
                          : a.family == Family::kQwen2Moe ? !o         // qkv_bias: q, k and v only
                                                          : qkv == o;  // attention_bias: all four or none
        if (!fits) fail("layer ", l, "'s attention biases (q/k/v ", qkv, ", o ", o, ") do not fit ", family);
        const std::string p = cat("model.layers.", l, ".", a.attention, ".");
        if (qkv)
            for (const char* m : {a.attn.q, a.attn.k, a.attn.v}) info.weight_map[cat(p, m, ".bias")] = "";
        if (o) info.weight_map[cat(p, a.attn.o, ".bias")] = "";
    }
}

Json token_id(int32_t id) { return id < 0 ? Json(nullptr) : Json(id); }

}  // namespace

CheckpointInfo info_for_writing(Family family, const Model& model, const DecoderWeights& decoder) {
    const Arch& a = arch_of(family);
    CheckpointInfo info;
    info.family = family;
    info.shape = model.shape;
    info.config_path = "the written config.json";
    if (model.layers.size() != static_cast<size_t>(model.shape.num_layers) ||
        decoder.layers.size() != model.layers.size())
        fail("the model has ", model.layers.size(), " MoE blocks and ", decoder.layers.size(),
             " attention layers; its shape says ", model.shape.num_layers, ": write the whole model");
    check_decoder(decoder, model.shape, "the model to write");
    info.layers.assign(model.layers.size(), LayerKind{});
    mlp_sizes(model, a, info);
    decoder_fit(decoder, a, info);
    return info;
}

Json hf_config_for(const CheckpointInfo& info, const CheckpointWriteOptions& options) {
    const Arch& a = arch_of(info.family);
    const ModelShape& m = info.shape;
    const DecoderShape& s = m.decoder;
    Json c;
    c["architectures"] = Json::array({a.architecture});
    c["model_type"] = family_name(info.family);
    c["hidden_size"] = m.d_model;
    c["num_hidden_layers"] = m.num_layers;
    c["num_attention_heads"] = s.num_heads;
    c["num_key_value_heads"] = s.num_kv_heads;
    c["vocab_size"] = s.vocab_size;
    c["rms_norm_eps"] = m.rms_norm_eps;
    c["rope_theta"] = s.rope_theta;  // transformers 4; 5 reads rope_parameters
    c["rope_parameters"] = {{"rope_theta", s.rope_theta}, {"rope_type", "default"}};
    c["max_position_embeddings"] = options.max_position_embeddings;
    c["hidden_act"] = "silu";
    c["tie_word_embeddings"] = s.tie_word_embeddings;
    c["num_experts_per_tok"] = m.top_k;
    c["router_aux_loss_coef"] = options.router_aux_loss_coef.value_or(a.router_aux_loss_coef);
    c["output_router_logits"] = false;
    c["torch_dtype"] = "float32";  // transformers 4
    c["dtype"] = "float32";        // transformers 5
    c["attention_dropout"] = 0.0;
    c["bos_token_id"] = token_id(options.bos_token_id);
    c["pad_token_id"] = token_id(options.pad_token_id);
    c["eos_token_id"] = options.eos_token_ids.size() == 1 ? Json(options.eos_token_ids[0])
                        : options.eos_token_ids.empty()   ? Json(nullptr)
                                                          : Json(options.eos_token_ids);
    c[a.experts_key] = m.num_experts;
    if (info.family == Family::kQwen3Moe) c["num_local_experts"] = m.num_experts;  // transformers 5's name
    c[a.d_ff_key] = m.d_ff;
    if (!a.always_norm_topk) c["norm_topk_prob"] = m.norm_topk_prob;
    const bool biases = info.weight_map.count(cat("model.layers.0.", a.attention, ".", a.attn.q, ".bias")) > 0;
    if (info.family == Family::kMixtral || info.family == Family::kQwen3Moe) c["head_dim"] = s.head_dim;
    if (info.family == Family::kMixtral) {
        c["sliding_window"] = s.sliding_window > 0 ? Json(s.sliding_window) : Json(nullptr);
        c["router_jitter_noise"] = 0.0;
    } else if (info.family == Family::kQwen2Moe) {
        c["qkv_bias"] = biases;
    } else {
        c["attention_bias"] = biases;
    }
    if (info.family == Family::kOlmoe) c["clip_qkv"] = nullptr;
    if (a.sparse_step) {
        std::vector<int> dense;
        for (int l = 0; l < m.num_layers; ++l)
            if (!info.layers[l].moe) dense.push_back(l);
        c["mlp_only_layers"] = dense;
        c["decoder_sparse_step"] = 1;
        c["intermediate_size"] = info.dense_d_ff > 0 ? info.dense_d_ff : m.d_ff;
        c["use_sliding_window"] = false;
        c["sliding_window"] = nullptr;
    }
    if (info.shared_d_ff > 0) c["shared_expert_intermediate_size"] = info.shared_d_ff;
    return c;
}

}  // namespace epmoe::checkpoint_detail
