#include "epmoe/moe/router.hpp"

#include <algorithm>
#include <cmath>

#include "epmoe/base/error.hpp"

namespace epmoe {

namespace {

// The gate's scores of one token's logits z [E]: softmax over the experts, or a sigmoid each.
void gate_scores(const float* z, int num_experts, GateKind gate, std::vector<double>& score) {
    if (gate == GateKind::kSoftmax) {
        double max = *std::max_element(z, z + num_experts), sum = 0;
        for (int e = 0; e < num_experts; ++e) sum += score[e] = std::exp(static_cast<double>(z[e]) - max);
        for (int e = 0; e < num_experts; ++e) score[e] /= sum;
    } else {
        for (int e = 0; e < num_experts; ++e) score[e] = 1.0 / (1.0 + std::exp(-static_cast<double>(z[e])));
    }
}

}  // namespace

Routing route(std::span<const float> logits, int num_experts, int top_k, std::span<const float> bias, GateKind gate,
              bool norm_topk, std::span<const float> select_logits) {
    EPMOE_ASSERT(top_k >= 1 && top_k <= num_experts && logits.size() % num_experts == 0);
    EPMOE_ASSERT(select_logits.empty() || select_logits.size() == logits.size());
    EPMOE_ASSERT(bias.empty() || static_cast<int>(bias.size()) == num_experts);
    const size_t n = logits.size() / num_experts;
    Routing r;
    r.top_k = top_k;
    r.expert_ids.resize(n * top_k);
    r.weights.resize(n * top_k);
    std::vector<double> score(num_experts), select(num_experts);
    std::vector<int> order(num_experts);
    for (size_t t = 0; t < n; ++t) {
        gate_scores(&logits[t * num_experts], num_experts, gate, score);
        if (!select_logits.empty()) gate_scores(&select_logits[t * num_experts], num_experts, gate, select);
        const std::vector<double>& chosen = select_logits.empty() ? score : select;
        auto key = [&](int e) { return bias.empty() ? chosen[e] : chosen[e] + bias[e]; };
        for (int e = 0; e < num_experts; ++e) order[e] = e;
        // Descending key; equal keys keep the lower expert index first.
        std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int a, int b) {
            double ka = key(a), kb = key(b);
            return ka > kb || (ka == kb && a < b);
        });
        double sum = 0;
        for (int i = 0; i < top_k; ++i) sum += score[order[i]];
        for (int i = 0; i < top_k; ++i) {
            r.expert_ids[t * top_k + i] = order[i];
            double w = score[order[i]];
            r.weights[t * top_k + i] = static_cast<float>(norm_topk && sum > 0 ? w / sum : w);
        }
    }
    return r;
}

}  // namespace epmoe
