#include "epmoe/router.hpp"

#include <algorithm>
#include <cmath>

#include "epmoe/error.hpp"

namespace epmoe {

void rms_norm(std::span<const float> x, std::span<const float> g, double eps, std::span<float> out) {
    const size_t d = g.size();
    EPMOE_ASSERT(d > 0 && x.size() % d == 0 && out.size() == x.size());
    for (size_t row = 0; row < x.size(); row += d) {
        double sum_sq = 0;
        for (size_t j = 0; j < d; ++j) sum_sq += static_cast<double>(x[row + j]) * x[row + j];
        const double inv = 1.0 / std::sqrt(sum_sq / static_cast<double>(d) + eps);
        for (size_t j = 0; j < d; ++j) out[row + j] = static_cast<float>(x[row + j] * inv) * g[j];
    }
}

void gate_logits(std::span<const float> x, std::span<const float> w_gate, int d_model, int num_experts,
                 std::span<float> logits) {
    const size_t d = d_model, n = x.size() / d;
    EPMOE_ASSERT(w_gate.size() == d * num_experts && logits.size() == n * num_experts);
    for (size_t t = 0; t < n; ++t) {
        const float* row = &x[t * d];
        for (int e = 0; e < num_experts; ++e) {
            const float* w = &w_gate[e * d];
            // Four partial sums keep the loop pipelined; the order is fixed, so results are reproducible.
            double acc[4] = {0, 0, 0, 0};
            size_t j = 0;
            for (; j + 4 <= d; j += 4)
                for (int u = 0; u < 4; ++u) acc[u] += static_cast<double>(row[j + u]) * w[j + u];
            for (; j < d; ++j) acc[0] += static_cast<double>(row[j]) * w[j];
            logits[t * num_experts + e] = static_cast<float>((acc[0] + acc[1]) + (acc[2] + acc[3]));
        }
    }
}

Routing route(std::span<const float> logits, int num_experts, int top_k, std::span<const float> bias, GateKind gate,
              bool norm_topk) {
    EPMOE_ASSERT(top_k >= 1 && top_k <= num_experts && logits.size() % num_experts == 0);
    EPMOE_ASSERT(bias.empty() || static_cast<int>(bias.size()) == num_experts);
    const size_t n = logits.size() / num_experts;
    Routing r;
    r.top_k = top_k;
    r.expert_ids.resize(n * top_k);
    r.weights.resize(n * top_k);
    std::vector<double> score(num_experts);
    std::vector<int> order(num_experts);
    for (size_t t = 0; t < n; ++t) {
        const float* z = &logits[t * num_experts];
        if (gate == GateKind::kSoftmax) {
            double max = *std::max_element(z, z + num_experts), sum = 0;
            for (int e = 0; e < num_experts; ++e) sum += score[e] = std::exp(static_cast<double>(z[e]) - max);
            for (int e = 0; e < num_experts; ++e) score[e] /= sum;
        } else {
            for (int e = 0; e < num_experts; ++e) score[e] = 1.0 / (1.0 + std::exp(-static_cast<double>(z[e])));
        }
        auto key = [&](int e) { return bias.empty() ? score[e] : score[e] + bias[e]; };
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
