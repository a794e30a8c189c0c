#include "epmoe/model/model.hpp"

namespace epmoe {
namespace {

uint64_t mlp_bytes(const ExpertWeights& w) { return (w.w13.size() + w.w2.size()) * sizeof(float) + w.prepared_bytes; }

}  // namespace

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

uint64_t Model::expert_bytes() const {
    uint64_t bytes = 0;
    for (const auto& layer : layers)
        for (const auto& [id, w] : layer.experts) bytes += mlp_bytes(w);
    return bytes;
}

}  // namespace epmoe
