#include "epmoe/model.hpp"

namespace epmoe {
namespace {

uint64_t mlp_bytes(const ExpertWeights& w) { return (w.w13.size() + w.w2.size()) * sizeof(float) + w.prepared_bytes; }

}  // namespace

ModelShape ModelShape::from_config(const ModelConfig& m) {
    ModelShape s;
    s.num_layers = m.num_layers;
    s.d_model = m.d_model;
    s.d_ff = m.d_ff;
    s.num_experts = m.num_experts;
    s.top_k = m.top_k;
    s.gate = m.gate;
    s.norm_topk_prob = m.norm_topk_prob;
    s.rms_norm_eps = m.rms_norm_eps;
    return s;
}

uint64_t Model::weight_bytes() const {
    uint64_t bytes = 0;
    for (const auto& layer : layers) {
        bytes += (layer.gate.size() + layer.norm.size()) * sizeof(float);
        for (const auto& [id, w] : layer.experts) bytes += mlp_bytes(w);
        for (const auto* mlp : {&layer.dense, &layer.shared_expert})
            if (*mlp) bytes += mlp_bytes((*mlp)->w);
        bytes += layer.shared_expert_gate.size() * sizeof(float);
    }
    return bytes;
}

}  // namespace epmoe
