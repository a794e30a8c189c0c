// oneDNN's fixed-shape matmuls of one type (FP32 or BF16 source and weights, FP32 output) on weights packed once
// into the blocked layout its brgemm reads: the packed MLP kernels (mlp_onednn_packed.cpp) and PackedLinear. The
// layout is the same at every row count (measured, 1..2,100 rows at 11 shapes); each call runs a primitive made
// for its row count, made on first use (0.15-0.3 ms) and cached. Private to src/ops.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace epmoe {

class BrgemmMatmuls {
public:
    using Dt = dnnl::memory::data_type;

    explicit BrgemmMatmuls(Dt type) : type_(type) {}

    // oneDNN's implementation of a fixed-shape matmul of this type on this CPU when it is its brgemm ("brg:..."),
    // else empty (then nothing here may run).
    static std::string brgemm_implementation(Dt type);

    // Bytes of a k x n weight matrix packed (its layout's blocks, padded).
    size_t packed_bytes(int64_t k, int64_t n) const { return layout(k, n).desc.get_size(); }
    // W [n, k] row-major FP32 (as loaded) -> W^T [k, n] packed, in this type (BF16: to_bf16).
    std::vector<std::byte> pack(const float* w, int64_t k, int64_t n) const;
    // dst [m, n] (FP32, contiguous) = src [m, k] (this type, leading dimension lda) · W, W packed by pack. Safe
    // to call from several threads at once (each gives the primitive its own scratchpad).
    void run(int64_t m, int64_t k, int64_t n, int64_t lda, const void* src, const std::byte* w, float* dst) const;

private:
    using Desc = dnnl::memory::desc;
    // A matmul of fixed row count and the scratchpad it needs. The scratchpad is the caller's (scratchpad_mode
    // user): one a primitive owned would be shared by the expert tasks running it at once (seen: rows computed
    // wrong now and then with 2 threads, before this).
    struct Primitive {
        dnnl::matmul matmul;
        Desc weights, scratchpad;  // the packed layout it reads, and its scratchpad's size
        int64_t rows = 0;          // the rows it was made for: the call's, or more (the call's rows padded)
    };

    struct Layout {
        Desc desc;         // the packed weights' layout
        std::string impl;  // the brgemm it was made for ("brg:avx512_core_amx_bf16"), which every primitive runs
    };
    Layout layout(int64_t k, int64_t n) const;
    Primitive make_primitive(int64_t m, int64_t k, int64_t n, int64_t lda, int threads) const;
    Primitive primitive(int64_t m, int64_t k, int64_t n, int64_t lda) const;

    Dt type_;
    mutable std::mutex mutex_;
    mutable std::map<std::pair<int64_t, int64_t>, Layout> layouts_;
    mutable std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int>, Primitive> primitives_;
};

}  // namespace epmoe
