// onednn/fp32 and onednn/bf16 where oneDNN has a matmul of fixed shape for this CPU in that type (its brgemm, "brg:"
// implementations: avx512_core and up for FP32, avx512_core_bf16 and up for BF16): each MLP's weights are reordered
// once, at prepare, into the blocked layout that matmul reads, which is the same for every row count, and each call
// runs a primitive made for its row count (made on first use, then cached). The runtime-M matmuls of
// mlp_onednn.cpp (gemm:jit) instead repack the weights inside every call. Measured on the expert shapes at one
// thread (AMD EPYC Zen 4): FP32 W1|W3 107-112 GFLOP/s at 128-2048 rows against 86-110, at 16 rows 84-95 against
// 31-50; BF16 (d_model 1024 x 7168) 192 / 194 / 204 / 213 / 217 at 16 / 32 / 64 / 128 / 256 rows against 97 / 134 /
// 162 / 192 / 207. A row's result does not depend on the rows run with it.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "bf16_swiglu.hpp"
#include "brgemm_matmuls.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/ops/mlp_kernel.hpp"

namespace epmoe {
namespace {

using Dt = dnnl::memory::data_type;

// An MLP's weights in the matmuls' layout: W1|W3 as [d_model, 2 d_ff] and W2 as [d_ff, d_model], blocked.
struct PackedWeights {
    const std::byte* w13 = nullptr;
    const std::byte* w2 = nullptr;
    size_t w13_bytes = 0, w2_bytes = 0;
    std::vector<std::byte> w13_own, w2_own;  // what w13 and w2 point to; empty in a view (MlpKernel::view)
    std::shared_ptr<const void> owner;       // a view's memory
};

class PackedKernel final : public MlpKernel {
public:
    PackedKernel(Dt type, std::string impl) : type_(type), impl_(std::move(impl)) {}

    std::string name() const override { return type_ == Dt::bf16 ? "onednn/bf16" : "onednn/fp32"; }
    std::string implementation() const override { return impl_ + ", weights packed at load"; }

    void prepare(ExpertWeights& w, int d_model, int d_ff) const override {
        EPMOE_ASSERT(w.w13.size() == 2ull * d_ff * d_model && w.w2.size() == 1ull * d_model * d_ff);
        auto p = std::make_shared<PackedWeights>();
        p->w13_own = matmuls_.pack(w.w13.data(), d_model, 2 * int64_t{d_ff});
        p->w2_own = matmuls_.pack(w.w2.data(), d_ff, d_model);
        p->w13 = p->w13_own.data(), p->w2 = p->w2_own.data();
        p->w13_bytes = p->w13_own.size(), p->w2_bytes = p->w2_own.size();
        std::vector<float>().swap(w.w13);  // the packed copies (BF16: rounded, to_bf16) are all this kernel reads
        std::vector<float>().swap(w.w2);
        w.prepared_bytes = p->w13_bytes + p->w2_bytes;
        w.prepared = std::move(p);
    }

    void forward(const ExpertWeights& w, int d_model, int d_ff, std::span<const float> x, std::span<float> y,
                 std::vector<float>& scratch) const override {
        const auto* p = static_cast<const PackedWeights*>(w.prepared.get());
        EPMOE_ASSERT(p != nullptr && y.size() == x.size());
        const int64_t n = static_cast<int64_t>(x.size() / d_model), h_cols = 2 * int64_t{d_ff};
        if (n == 0) return;
        if (type_ == Dt::bf16) {
            bf16_swiglu(d_model, d_ff, n, x.data(), y.data(), scratch, [&](bool w13, const uint16_t* a, float* out) {
                w13 ? run(n, d_model, h_cols, d_model, a, p->w13, out) : run(n, d_ff, d_model, d_ff, a, p->w2, out);
            });
            return;
        }
        scratch.resize(static_cast<size_t>(n * (h_cols + d_ff)));
        float* h = scratch.data();                 // [n, 2 d_ff]: W1·x | W3·x
        float* act = scratch.data() + n * h_cols;  // [n, d_ff], contiguous: brgemm takes no strided input at every M
        run(n, d_model, h_cols, d_model, x.data(), p->w13, h);
        silu_mul_rows_to(h, act, n, d_ff);
        run(n, d_ff, d_model, d_ff, act, p->w2, y.data());
    }

    MlpArrays arrays(const ExpertWeights& w, int, int) const override {
        const auto* p = static_cast<const PackedWeights*>(w.prepared.get());
        EPMOE_ASSERT(p != nullptr);
        return {{p->w13, p->w13_bytes}, {p->w2, p->w2_bytes}};
    }
    ExpertWeights view(const std::byte* w13, const std::byte* w2, int d_model, int d_ff,
                       std::shared_ptr<const void> owner) const override {
        auto p = std::make_shared<PackedWeights>();
        p->w13 = w13, p->w2 = w2;
        p->w13_bytes = matmuls_.packed_bytes(d_model, 2 * int64_t{d_ff});
        p->w2_bytes = matmuls_.packed_bytes(d_ff, d_model);
        p->owner = std::move(owner);
        ExpertWeights v;
        v.prepared_bytes = p->w13_bytes + p->w2_bytes;
        v.prepared = std::move(p);
        return v;
    }

private:
    // dst [m, n] = src [m, k] (leading dimension lda) · W, W packed.
    void run(int64_t m, int64_t k, int64_t n, int64_t lda, const void* src, const std::byte* w, float* dst) const {
        matmuls_.run(m, k, n, lda, src, w, dst);
    }

    Dt type_;
    std::string impl_;
    BrgemmMatmuls matmuls_{type_};
};

}  // namespace

// The packed kernel of dtype ("fp32" or "bf16"), or null where oneDNN's fixed-shape matmul of that type is not its
// brgemm on this CPU (there the runtime-M kernels of mlp_onednn.cpp run).
std::shared_ptr<const MlpKernel> onednn_packed_kernel(const std::string& dtype) {
    const Dt type = dtype == "bf16" ? Dt::bf16 : Dt::f32;
    const std::string impl = BrgemmMatmuls::brgemm_implementation(type);
    return impl.empty() ? nullptr : std::make_shared<PackedKernel>(type, impl);
}

}  // namespace epmoe
