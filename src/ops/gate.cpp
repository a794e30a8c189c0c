#include "epmoe/ops/gate.hpp"

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

}  // namespace epmoe
