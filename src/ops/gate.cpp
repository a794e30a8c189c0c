// The gate projection (gate.hpp) forward and backward, and the backward of the router's weights.
#include "epmoe/ops/gate.hpp"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <vector>

#include "epmoe/base/error.hpp"

namespace epmoe {

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

void gate_logits_backward(std::span<const float> x, std::span<const float> w_gate, int d_model, int num_experts,
                          std::span<const float> dlogits, std::span<float> dx, std::span<float> dw_gate) {
    const size_t d = static_cast<size_t>(d_model), n = x.size() / d, e = static_cast<size_t>(num_experts);
    EPMOE_ASSERT(d_model > 0 && num_experts > 0 && x.size() == n * d && n <= INT_MAX && w_gate.size() == e * d &&
                 dlogits.size() == n * e && (dx.empty() || dx.size() == x.size()) &&
                 (dw_gate.empty() || dw_gate.size() == w_gate.size()));
    if (n == 0) return;
    const int rows = static_cast<int>(n);
    if (!dx.empty())  // dx [n, d] += dlogits [n, E] w_gate [E, d]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, d_model, num_experts, 1.0f, dlogits.data(),
                    num_experts, w_gate.data(), d_model, 1.0f, dx.data(), d_model);
    if (!dw_gate.empty())  // dw_gate [E, d] += dlogits^T [E, n] x [n, d]
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, num_experts, d_model, rows, 1.0f, dlogits.data(),
                    num_experts, x.data(), d_model, 1.0f, dw_gate.data(), d_model);
}

void route_weights_backward(std::span<const float> logits, int num_experts, std::span<const int32_t> expert_ids,
                            int top_k, GateKind gate, bool norm_topk, std::span<const float> dweights,
                            std::span<float> dlogits) {
    const size_t e_count = static_cast<size_t>(num_experts), k = static_cast<size_t>(top_k);
    EPMOE_ASSERT(top_k >= 1 && top_k <= num_experts && logits.size() % e_count == 0);
    const size_t n = logits.size() / e_count;
    EPMOE_ASSERT(expert_ids.size() == n * k && dweights.size() == n * k && dlogits.size() == logits.size());
    std::vector<double> score(e_count), dscore(e_count);  // [num_experts]: a row's scores and their gradient
    for (size_t t = 0; t < n; ++t) {
        const float* z = &logits[t * e_count];
        const int32_t* ids = &expert_ids[t * k];
        const float* dw = &dweights[t * k];
        if (gate == GateKind::kSoftmax) {
            const double max = *std::max_element(z, z + e_count);
            double sum = 0;
            for (size_t e = 0; e < e_count; ++e) sum += score[e] = std::exp(static_cast<double>(z[e]) - max);
            for (size_t e = 0; e < e_count; ++e) score[e] /= sum;
        } else {
            for (size_t e = 0; e < e_count; ++e) score[e] = 1.0 / (1.0 + std::exp(-static_cast<double>(z[e])));
        }
        // weights w_i = s_i / S (S = the selected scores' sum) or s_i: ds_i = (dw_i - sum_j dw_j w_j) / S, or dw_i.
        double sum = 0, dot = 0;
        for (size_t i = 0; i < k; ++i) sum += score[static_cast<size_t>(ids[i])];
        const bool renorm = norm_topk && sum > 0;
        for (size_t i = 0; i < k; ++i) dot += dw[i] * (renorm ? score[static_cast<size_t>(ids[i])] / sum : 0.0);
        std::fill(dscore.begin(), dscore.end(), 0.0);
        for (size_t i = 0; i < k; ++i) {
            EPMOE_ASSERT(ids[i] >= 0 && ids[i] < num_experts);
            dscore[static_cast<size_t>(ids[i])] += renorm ? (dw[i] - dot) / sum : dw[i];
        }
        // softmax: dz_e = s_e (ds_e - sum_f ds_f s_f); sigmoid: dz_e = ds_e s_e (1 - s_e).
        double mean = 0;
        if (gate == GateKind::kSoftmax)
            for (size_t e = 0; e < e_count; ++e) mean += dscore[e] * score[e];
        for (size_t e = 0; e < e_count; ++e) {
            const double dz =
                gate == GateKind::kSoftmax ? score[e] * (dscore[e] - mean) : dscore[e] * score[e] * (1.0 - score[e]);
            dlogits[t * e_count + e] += static_cast<float>(dz);
        }
    }
}

}  // namespace epmoe
