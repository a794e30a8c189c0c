// The trainable tensors of the whole decoder in the optimizer's registry (decoder_train.hpp).
#include <string>

#include "epmoe/train/decoder_train.hpp"
#include "epmoe/train/optim.hpp"

namespace epmoe {
namespace {

// Adds one tensor (skipped when empty: an absent bias or norm).
void add(ParamRegistry& r, std::string name, std::vector<float>& value, std::vector<float>& grad, ParamKind kind,
         const mpi::Comm* replicas, bool decay_router) {
    if (value.empty()) return;
    r.add({std::move(name), value, grad, weight_decay_applies(kind, decay_router), replicas});
}

void add_mlp(ParamRegistry& r, const std::string& name, ExpertWeights& w, ExpertWeights& g, const mpi::Comm* replicas) {
    add(r, name + ".w13", w.w13, g.w13, ParamKind::kWeight, replicas, false);
    add(r, name + ".w2", w.w2, g.w2, ParamKind::kWeight, replicas, false);
}

void add_attention(ParamRegistry& r, const std::string& p, AttentionWeights& w, AttentionWeights& g,
                   const mpi::Comm* world) {
    add(r, p + "input_norm", w.input_norm, g.input_norm, ParamKind::kNorm, world, false);
    add(r, p + "wq", w.wq, g.wq, ParamKind::kWeight, world, false);
    add(r, p + "wk", w.wk, g.wk, ParamKind::kWeight, world, false);
    add(r, p + "wv", w.wv, g.wv, ParamKind::kWeight, world, false);
    add(r, p + "wo", w.wo, g.wo, ParamKind::kWeight, world, false);
    add(r, p + "bq", w.bq, g.bq, ParamKind::kBias, world, false);
    add(r, p + "bk", w.bk, g.bk, ParamKind::kBias, world, false);
    add(r, p + "bv", w.bv, g.bv, ParamKind::kBias, world, false);
    add(r, p + "bo", w.bo, g.bo, ParamKind::kBias, world, false);
    add(r, p + "q_norm", w.q_norm, g.q_norm, ParamKind::kNorm, world, false);
    add(r, p + "k_norm", w.k_norm, g.k_norm, ParamKind::kNorm, world, false);
}

}  // namespace

void register_params(ParamRegistry& r, Model& model, DecoderWeights& decoder, ModelGrads& grads,
                     const mpi::Comm& world, bool decay_router, const mpi::Comm* expert_replicas) {
    const mpi::Comm* all = &world;
    add(r, "embed", decoder.embed, grads.decoder.embed, ParamKind::kWeight, all, false);
    for (size_t l = 0; l < model.layers.size(); ++l) {
        const std::string p = "layer" + std::to_string(l) + ".";
        add_attention(r, p + "attn.", decoder.layers[l], grads.decoder.layers[l], all);
        MoeLayer &w = model.layers[l], &g = grads.model.layers[l];
        add(r, p + "post_norm", w.norm, g.norm, ParamKind::kNorm, all, false);
        add(r, p + "router", w.gate, g.gate, ParamKind::kRouter, all, decay_router);
        if (w.dense) add_mlp(r, p + "dense", w.dense->w, g.dense->w, all);
        if (w.shared_expert) add_mlp(r, p + "shared_expert", w.shared_expert->w, g.shared_expert->w, all);
        add(r, p + "shared_expert_gate", w.shared_expert_gate, g.shared_expert_gate, ParamKind::kWeight, all, false);
    }
    add(r, "final_norm", decoder.final_norm, grads.decoder.final_norm, ParamKind::kNorm, all, false);
    add(r, "lm_head", decoder.lm_head, grads.decoder.lm_head, ParamKind::kWeight, all, false);
    for (size_t l = 0; l < model.layers.size(); ++l)  // this rank's experts last: summed over their replicas only
        for (auto& [e, w] : model.layers[l].experts)
            add_mlp(r, "layer" + std::to_string(l) + ".expert" + std::to_string(e), w,
                    grads.model.layers[l].experts.at(e), expert_replicas);
}

}  // namespace epmoe
