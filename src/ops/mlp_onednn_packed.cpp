// onednn/fp32 and onednn/bf16 where oneDNN has a matmul of fixed shape for this CPU in that type (its brgemm, "brg:"
// implementations: avx512_core and up for FP32, avx512_core_bf16 and up for BF16): each MLP's weights are reordered
// once, at prepare, into the blocked layout that matmul reads, which is the same for every row count, and each call
// runs a primitive made for its row count (made on first use, then cached). The runtime-M matmuls of
// mlp_onednn.cpp (gemm:jit) instead repack the weights inside every call. Measured on the expert shapes at one
// thread (AMD EPYC Zen 4): FP32 W1|W3 107-112 GFLOP/s at 128-2048 rows against 86-110, at 16 rows 84-95 against
// 31-50; BF16 (d_model 1024 x 7168) 192 / 194 / 204 / 213 / 217 at 16 / 32 / 64 / 128 / 256 rows against 97 / 134 /
// 162 / 192 / 207. A row's result does not depend on the rows run with it.
// With compute.weight_panel_kib (FP32 only) the weights are packed as column panels of about that many KiB each
// (W1's and W3's same columns together, W2's output columns), and a call runs every row through one panel before
// the next: the loop order of a Goto-style sgemm, where a whole-matrix call streams all of W for each block of
// rows. Meant for many ranks sharing one memory system (the 16-core machine: bench/SCALE-REAL-RECHECK.md).
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

// Column panels of a weight matrix: panel i holds `width[i]` output columns from `first[i]` on, packed at byte
// `offset[i]` of the matrix's array. One panel (the whole matrix) where panels are off.
struct Panels {
    std::vector<int64_t> first, width;
    std::vector<size_t> offset;
    size_t bytes = 0;  // the whole array
};

// An MLP's weights in the matmuls' layout: W1|W3 as [d_model, 2 d_ff] and W2 as [d_ff, d_model], blocked (with
// panels: each W1|W3 panel as [d_model, 2 width], its W1 columns then its W3 columns; each W2 panel [d_ff, width]).
struct PackedWeights {
    const std::byte* w13 = nullptr;
    const std::byte* w2 = nullptr;
    size_t w13_bytes = 0, w2_bytes = 0;
    Panels w13_cut, w2_cut;                  // where each matrix's panels are (cut once, at prepare or view)
    std::vector<std::byte> w13_own, w2_own;  // what w13 and w2 point to; empty in a view (MlpKernel::view)
    std::shared_ptr<const void> owner;       // a view's memory
};

class PackedKernel final : public MlpKernel {
public:
    PackedKernel(Dt type, std::string impl, int panel_kib)
        : type_(type), impl_(std::move(impl)), panel_bytes_(int64_t{panel_kib} * 1024) {
        EPMOE_ASSERT(panel_kib >= 0 && (panel_kib == 0 || type == Dt::f32));
    }

    std::string name() const override { return type_ == Dt::bf16 ? "onednn/bf16" : "onednn/fp32"; }
    std::string implementation() const override {
        return impl_ + ", weights packed at load" +
               (panel_bytes_ ? ", in panels of " + std::to_string(panel_bytes_ / 1024) + " KiB" : "");
    }

    void prepare(ExpertWeights& w, int d_model, int d_ff) const override {
        EPMOE_ASSERT(w.w13.size() == 2ull * d_ff * d_model && w.w2.size() == 1ull * d_model * d_ff);
        auto p = std::make_shared<PackedWeights>();
        p->w13_cut = w13_panels(d_model, d_ff), p->w2_cut = w2_panels(d_model, d_ff);
        p->w13_own = pack_w13(w.w13.data(), d_model, d_ff, p->w13_cut);
        p->w2_own = pack_w2(w.w2.data(), d_model, d_ff, p->w2_cut);
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
        if (panel_bytes_) return forward_panels(*p, d_model, d_ff, n, x.data(), y.data(), scratch);
        scratch.resize(static_cast<size_t>(n * (h_cols + d_ff)));
        float* h = scratch.data();                 // [n, 2 d_ff]: W1·x | W3·x
        float* act = scratch.data() + n * h_cols;  // [n, d_ff], contiguous: brgemm takes no strided input at every M
        run(n, d_model, h_cols, d_model, x.data(), p->w13, h);
        silu_mul_rows_to(h, act, n, d_ff, d_ff);
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
        p->w13_cut = w13_panels(d_model, d_ff), p->w2_cut = w2_panels(d_model, d_ff);
        p->w13_bytes = p->w13_cut.bytes, p->w2_bytes = p->w2_cut.bytes;
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

    // `cols` output columns of `col_bytes` weight bytes each, cut into panels of about panel_bytes_ (a multiple of
    // 64 columns, brgemm's block) each packed as a k x (width * per_col) matmul, each 64-byte aligned; one panel
    // where panels are off (then bytes is the whole matrix's packed size, exactly).
    Panels panels(int64_t cols, int64_t col_bytes, int64_t k, int64_t per_col) const {
        const int64_t step = panel_bytes_ ? std::max<int64_t>(64, panel_bytes_ / col_bytes / 64 * 64) : cols;
        Panels out;
        for (int64_t first = 0; first < cols; first += step) {
            out.first.push_back(first);
            out.width.push_back(std::min(step, cols - first));
            out.offset.push_back((out.bytes + 63) / 64 * 64);
            out.bytes = out.offset.back() + matmuls_.packed_bytes(k, out.width.back() * per_col);
        }
        return out;
    }
    Panels w13_panels(int64_t d_model, int64_t d_ff) const { return panels(d_ff, 8 * d_model, d_model, 2); }
    Panels w2_panels(int64_t d_model, int64_t d_ff) const { return panels(d_model, 4 * d_ff, d_ff, 1); }

    // w13 [2 d_ff, d_model] as loaded -> its panels: the rows of W1 and then of W3 for the panel's columns.
    std::vector<std::byte> pack_w13(const float* w13, int64_t d_model, int64_t d_ff, const Panels& cut) const {
        if (!panel_bytes_) return matmuls_.pack(w13, d_model, 2 * d_ff);
        std::vector<std::byte> out(cut.bytes);
        std::vector<float> rows;
        for (size_t i = 0; i < cut.first.size(); ++i) {
            const int64_t first = cut.first[i], width = cut.width[i];
            rows.assign(w13 + first * d_model, w13 + (first + width) * d_model);
            rows.insert(rows.end(), w13 + (d_ff + first) * d_model, w13 + (d_ff + first + width) * d_model);
            const std::vector<std::byte> packed = matmuls_.pack(rows.data(), d_model, 2 * width);
            std::copy(packed.begin(), packed.end(), out.begin() + static_cast<std::ptrdiff_t>(cut.offset[i]));
        }
        return out;
    }
    // w2 [d_model, d_ff] as loaded -> its panels: the rows of the panel's output columns.
    std::vector<std::byte> pack_w2(const float* w2, int64_t d_model, int64_t d_ff, const Panels& cut) const {
        if (!panel_bytes_) return matmuls_.pack(w2, d_ff, d_model);
        std::vector<std::byte> out(cut.bytes);
        for (size_t i = 0; i < cut.first.size(); ++i) {
            const std::vector<std::byte> packed = matmuls_.pack(w2 + cut.first[i] * d_ff, d_ff, cut.width[i]);
            std::copy(packed.begin(), packed.end(), out.begin() + static_cast<std::ptrdiff_t>(cut.offset[i]));
        }
        return out;
    }

    // The FP32 forward a panel at a time: every row through W1|W3's panel and its SwiGLU (into act's columns), then
    // through each of W2's panels (into y's columns).
    void forward_panels(const PackedWeights& p, int64_t d_model, int64_t d_ff, int64_t n, const float* x, float* y,
                        std::vector<float>& scratch) const {
        const Panels &a = p.w13_cut, &b = p.w2_cut;
        const int64_t widest = std::max(2 * a.width[0], b.width[0]);
        scratch.resize(static_cast<size_t>(n * (widest + d_ff)));
        float* out = scratch.data();               // [n, panel's columns]: brgemm writes no strided dst
        float* act = scratch.data() + n * widest;  // [n, d_ff]
        for (size_t i = 0; i < a.first.size(); ++i) {
            run(n, d_model, 2 * a.width[i], d_model, x, p.w13 + a.offset[i], out);
            silu_mul_rows_to(out, act + a.first[i], n, static_cast<int>(a.width[i]), d_ff);
        }
        for (size_t i = 0; i < b.first.size(); ++i) {
            const int64_t first = b.first[i], width = b.width[i];
            run(n, d_ff, width, d_ff, act, p.w2 + b.offset[i], out);
            for (int64_t t = 0; t < n; ++t) std::copy(out + t * width, out + (t + 1) * width, y + t * d_model + first);
        }
    }

    Dt type_;
    std::string impl_;
    int64_t panel_bytes_;  // compute.weight_panel_kib in bytes; 0: whole matrices
    BrgemmMatmuls matmuls_{type_};
};

}  // namespace

// The packed kernel of dtype ("fp32" or "bf16"; panel_kib > 0: FP32 in panels), or null where oneDNN's
// fixed-shape matmul of that type is not its brgemm on this CPU (there the runtime-M kernels of mlp_onednn.cpp run).
std::shared_ptr<const MlpKernel> onednn_packed_kernel(const std::string& dtype, int panel_kib) {
    const Dt type = dtype == "bf16" ? Dt::bf16 : Dt::f32;
    const std::string impl = BrgemmMatmuls::brgemm_implementation(type);
    return impl.empty() ? nullptr : std::make_shared<PackedKernel>(type, impl, panel_kib);
}

}  // namespace epmoe
