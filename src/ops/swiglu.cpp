#include "epmoe/ops/swiglu.hpp"

#include <cmath>

#include "epmoe/base/error.hpp"

namespace epmoe {

void expert_forward(const MlpKernel& kernel, const ExpertWeights& w, int d_model, int d_ff, std::span<const float> x,
                    std::span<float> y, std::vector<float>& scratch) {
    kernel.forward(w, d_model, d_ff, x, y, scratch);
}

void dense_forward(const MlpKernel& kernel, const DenseMlp& mlp, int d_model, std::span<const float> x,
                   std::span<float> y, std::vector<float>& scratch) {
    expert_forward(kernel, mlp.w, d_model, mlp.d_ff, x, y, scratch);
}

void add_shared_expert(const MlpKernel& kernel, const DenseMlp& mlp, std::span<const float> gate, int d_model,
                       std::span<const float> x, std::span<float> out, std::vector<float>& y,
                       std::vector<float>& scratch) {
    EPMOE_ASSERT(gate.size() == static_cast<size_t>(d_model) && out.size() == x.size());
    y.resize(x.size());
    dense_forward(kernel, mlp, d_model, x, y, scratch);
    for (size_t row = 0; row < x.size(); row += d_model) {
        double logit = 0;
        for (int j = 0; j < d_model; ++j) logit += static_cast<double>(gate[j]) * x[row + j];
        const float s = static_cast<float>(1.0 / (1.0 + std::exp(-logit)));
        for (int j = 0; j < d_model; ++j) out[row + j] += s * y[row + j];
    }
}

}  // namespace epmoe
