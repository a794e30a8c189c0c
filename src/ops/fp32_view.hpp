// The FP32 kernels' (openblas/fp32, onednn/fp32) side of MlpKernel::arrays and view (private to src/ops): they read
// W1|W3 and W2 as loaded, or, for a view of weights held elsewhere (a host's shared window), where `prepared`
// points.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>

#include "epmoe/base/error.hpp"
#include "epmoe/ops/mlp_kernel.hpp"

namespace epmoe {

// ExpertWeights::prepared of an FP32 view: the arrays' addresses and what keeps them alive.
struct Fp32View {
    const float* w13 = nullptr;
    const float* w2 = nullptr;
    std::shared_ptr<const void> owner;
};

// W1|W3 [2 d_ff, d_model] and W2 [d_model, d_ff] as an FP32 kernel reads them.
inline std::pair<const float*, const float*> fp32_weights(const ExpertWeights& w, int d_model, int d_ff) {
    if (const auto* v = static_cast<const Fp32View*>(w.prepared.get())) return {v->w13, v->w2};
    EPMOE_ASSERT(w.w13.size() == 2ull * d_ff * d_model && w.w2.size() == 1ull * d_model * d_ff);
    return {w.w13.data(), w.w2.data()};
}

inline MlpArrays fp32_arrays(const ExpertWeights& w, int d_model, int d_ff) {
    const auto [w13, w2] = fp32_weights(w, d_model, d_ff);
    const size_t n = sizeof(float) * d_model * d_ff;
    return {{reinterpret_cast<const std::byte*>(w13), 2 * n}, {reinterpret_cast<const std::byte*>(w2), n}};
}

inline ExpertWeights fp32_view(const std::byte* w13, const std::byte* w2, int d_model, int d_ff,
                               std::shared_ptr<const void> owner) {
    ExpertWeights w;
    w.prepared = std::make_shared<Fp32View>(
        Fp32View{reinterpret_cast<const float*>(w13), reinterpret_cast<const float*>(w2), std::move(owner)});
    w.prepared_bytes = 3ull * sizeof(float) * d_model * d_ff;
    return w;
}

}  // namespace epmoe
