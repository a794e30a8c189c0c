// The SwiGLU MLP of the onednn/bf16 kernels, packed (mlp_onednn_packed.cpp) or not (mlp_onednn.cpp): the input and
// the SiLU-multiply's output rounded to BF16 (to_bf16), FP32 accumulation and output. Private to src/ops.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "epmoe/ops/bf16.hpp"
#include "epmoe/ops/mlp_kernel.hpp"

namespace epmoe {

// y [n, d_model] = W2 · (silu(W1 · x) ⊙ (W3 · x)); matmul(w13, src, dst) runs src [n, K] BF16 (contiguous) times
// W1|W3 (w13 true: K = d_model, dst [n, 2 d_ff]) or W2 (K = d_ff, dst [n, d_model]), FP32 out.
template <class Matmul>
void bf16_swiglu(int64_t d_model, int64_t d_ff, int64_t n, const float* x, float* y, std::vector<float>& scratch,
                 const Matmul& matmul) {
    const int64_t h_cols = 2 * d_ff;
    scratch.resize(static_cast<size_t>(n * h_cols));
    float* h = scratch.data();               // [n, 2 d_ff] FP32
    thread_local std::vector<uint16_t> act;  // BF16 matmul input, reused across calls
    act.resize(static_cast<size_t>(n * std::max(d_model, d_ff)));
    rows_to_bf16(x, n, d_model, d_model, act.data());  // [n, d_model]
    matmul(true, act.data(), h);
    silu_mul_rows(h, n, static_cast<int>(d_ff));
    rows_to_bf16(h, n, d_ff, h_cols, act.data());  // [n, d_ff]
    matmul(false, act.data(), y);
}

}  // namespace epmoe
