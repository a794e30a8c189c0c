// The oneDNN kernels: FP32, and BF16 weights with FP32 accumulation. One fused W1|W3 matmul, the
// SiLU-multiply pass, one W2 matmul. Matmul primitives take M (rows) at run time, so one primitive per
// shape serves every call; they are created on first use and cached.
#include <algorithm>
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>

#include "bf16_swiglu.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/ops/bf16.hpp"
#include "epmoe/ops/mlp_kernel.hpp"
#include "fp32_view.hpp"
#include "onednn_runtime.hpp"

namespace epmoe {
namespace {

using Dt = dnnl::memory::data_type;

// dst[M, N] (leading dimension ldc) = src[M, K] (leading dimension lda) · W^T, W: [N, K] row-major.
// src and W are of type `type` (f32 or bf16), dst is f32; M is given per call.
class Matmul {
public:
    Matmul(Dt type, int64_t k, int64_t n, int64_t lda, int64_t ldc) : type_(type), k_(k), n_(n), lda_(lda), ldc_(ldc) {
        const int64_t m = DNNL_RUNTIME_DIM_VAL;
        dnnl::matmul::desc d(src_desc(m), weights_desc(), dst_desc(m));
        dnnl::matmul::primitive_desc pd(d, onednn_runtime().engine);  // throws dnnl::error if no implementation
        impl_ = pd.impl_info_str();
        prim_ = dnnl::matmul(pd);
    }

    void run(const void* src, const void* w, float* dst, int64_t m) const {
        const OneDnnRuntime rt = onednn_runtime();
        dnnl::memory a(src_desc(m), rt.engine, const_cast<void*>(src));
        dnnl::memory b(weights_desc(), rt.engine, const_cast<void*>(w));
        dnnl::memory c(dst_desc(m), rt.engine, dst);
        prim_.execute(rt.stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
        rt.stream.wait();
    }

    const std::string& impl() const { return impl_; }

private:
    dnnl::memory::desc src_desc(int64_t m) const { return {{m, k_}, type_, {lda_, 1}}; }
    dnnl::memory::desc weights_desc() const { return {{k_, n_}, type_, {1, k_}}; }  // W^T of row-major W
    dnnl::memory::desc dst_desc(int64_t m) const { return {{m, n_}, Dt::f32, {ldc_, 1}}; }

    Dt type_;
    int64_t k_, n_, lda_, ldc_;
    dnnl::matmul prim_;
    std::string impl_;
};

// The cache of matmuls by (type, K, N, lda, ldc). A few entries per model shape.
class MatmulCache {
public:
    const Matmul& get(Dt type, int64_t k, int64_t n, int64_t lda, int64_t ldc) {
        std::lock_guard<std::mutex> lock(mutex_);
        auto key = std::make_tuple(static_cast<int>(type), k, n, lda, ldc);
        auto it = cache_.find(key);
        if (it == cache_.end()) it = cache_.emplace(key, std::make_unique<Matmul>(type, k, n, lda, ldc)).first;
        return *it->second;
    }

private:
    std::mutex mutex_;
    std::map<std::tuple<int, int64_t, int64_t, int64_t, int64_t>, std::unique_ptr<Matmul>> cache_;
};

// An MLP's weights in BF16, the form the bf16 kernel reads: same layouts as ExpertWeights' w13 and w2.
struct Bf16Weights {
    const uint16_t* w13 = nullptr;          // [2 d_ff, d_model]
    const uint16_t* w2 = nullptr;           // [d_model, d_ff]
    std::vector<uint16_t> w13_own, w2_own;  // what w13 and w2 point to; empty in a view (MlpKernel::view)
    std::shared_ptr<const void> owner;      // a view's memory
};

class OneDnnFp32Kernel final : public MlpKernel {
public:
    std::string name() const override { return "onednn/fp32"; }
    std::string implementation() const override { return impl_of(cache_, Dt::f32); }

    void prepare(ExpertWeights&, int, int) const override {}  // reads the FP32 weights as loaded

    void forward(const ExpertWeights& w, int d_model, int d_ff, std::span<const float> x, std::span<float> y,
                 std::vector<float>& scratch) const override {
        const int64_t n = static_cast<int64_t>(x.size() / d_model), h_cols = 2 * int64_t{d_ff};
        EPMOE_ASSERT(y.size() == x.size());
        const auto [w13, w2] = fp32_weights(w, d_model, d_ff);
        if (n == 0) return;
        scratch.resize(static_cast<size_t>(n * h_cols));
        float* h = scratch.data();  // [n, 2 d_ff]: W1·x | W3·x
        cache_.get(Dt::f32, d_model, h_cols, d_model, h_cols).run(x.data(), w13, h, n);
        silu_mul_rows(h, n, d_ff);
        cache_.get(Dt::f32, d_ff, d_model, h_cols, d_model).run(h, w2, y.data(), n);
    }

    MlpArrays arrays(const ExpertWeights& w, int d_model, int d_ff) const override {
        return fp32_arrays(w, d_model, d_ff);
    }
    ExpertWeights view(const std::byte* w13, const std::byte* w2, int d_model, int d_ff,
                       std::shared_ptr<const void> owner) const override {
        return fp32_view(w13, w2, d_model, d_ff, std::move(owner));
    }

    // The implementation oneDNN picked for an FP32 or BF16 matmul of a small probe shape.
    static std::string impl_of(MatmulCache& cache, Dt type) { return cache.get(type, 64, 64, 64, 64).impl(); }

private:
    mutable MatmulCache cache_;
};

// BF16 weights (stored once, half the bytes), FP32 activations between layers, FP32 accumulation.
// Activations are rounded to BF16 at each matmul's input. Where oneDNN has a BF16 matmul (avx512_core
// and up) it runs BF16 x BF16 -> FP32. Elsewhere (e.g. AVX2) it widens each BF16 weight matrix to FP32 per
// call (one matrix at a time, a transient buffer) and runs FP32 matmuls on the BF16-rounded activations:
// the products are exact in FP32 either way, so both compute the same sums (in a different order).
class OneDnnBf16Kernel final : public MlpKernel {
public:
    OneDnnBf16Kernel() {
        try {
            native_impl_ = cache_.get(Dt::bf16, 64, 64, 64, 64).impl();
            // oneDNN's reference loops ("ref:any") are unoptimised: widening to its FP32 GEMM wins then.
            native_ = native_impl_.rfind("ref", 0) != 0;
        } catch (const dnnl::error&) {
            native_ = false;  // no BF16 matmul on this CPU (oneDNN 2.6 needs avx512_core)
        }
    }

    std::string name() const override { return "onednn/bf16"; }
    std::string implementation() const override {
        if (native_) return native_impl_;
        return cat("bf16 weights widened to f32 per call, then ", OneDnnFp32Kernel::impl_of(cache_, Dt::f32),
                   " (no bf16 matmul on this CPU)");
    }

    void prepare(ExpertWeights& w, int d_model, int d_ff) const override {
        EPMOE_ASSERT(w.w13.size() == 2ull * d_ff * d_model && w.w2.size() == 1ull * d_model * d_ff);
        auto b = std::make_shared<Bf16Weights>();
        b->w13_own.resize(w.w13.size());
        b->w2_own.resize(w.w2.size());
        std::transform(w.w13.begin(), w.w13.end(), b->w13_own.begin(), to_bf16);
        std::transform(w.w2.begin(), w.w2.end(), b->w2_own.begin(), to_bf16);
        b->w13 = b->w13_own.data(), b->w2 = b->w2_own.data();
        std::vector<float>().swap(w.w13);  // the FP32 copies go: BF16 is all this kernel reads
        std::vector<float>().swap(w.w2);
        w.prepared_bytes = (b->w13_own.size() + b->w2_own.size()) * sizeof(uint16_t);
        w.prepared = std::move(b);
    }

    MlpArrays arrays(const ExpertWeights& w, int d_model, int d_ff) const override {
        const auto* b = static_cast<const Bf16Weights*>(w.prepared.get());
        EPMOE_ASSERT(b != nullptr);
        const size_t n = sizeof(uint16_t) * d_model * d_ff;
        return {{reinterpret_cast<const std::byte*>(b->w13), 2 * n}, {reinterpret_cast<const std::byte*>(b->w2), n}};
    }
    ExpertWeights view(const std::byte* w13, const std::byte* w2, int d_model, int d_ff,
                       std::shared_ptr<const void> owner) const override {
        auto b = std::make_shared<Bf16Weights>();
        b->w13 = reinterpret_cast<const uint16_t*>(w13), b->w2 = reinterpret_cast<const uint16_t*>(w2);
        b->owner = std::move(owner);
        ExpertWeights w;
        w.prepared_bytes = 3ull * sizeof(uint16_t) * d_model * d_ff;
        w.prepared = std::move(b);
        return w;
    }

    void forward(const ExpertWeights& w, int d_model, int d_ff, std::span<const float> x, std::span<float> y,
                 std::vector<float>& scratch) const override {
        const auto* b = static_cast<const Bf16Weights*>(w.prepared.get());
        EPMOE_ASSERT(b != nullptr && y.size() == x.size());
        const int64_t n = static_cast<int64_t>(x.size() / d_model);
        if (n == 0) return;
        if (native_)
            forward_native(*b, d_model, d_ff, n, x.data(), y.data(), scratch);
        else
            forward_widened(*b, d_model, d_ff, n, x.data(), y.data(), scratch);
    }

private:
    void forward_native(const Bf16Weights& b, int64_t d_model, int64_t d_ff, int64_t n, const float* x, float* y,
                        std::vector<float>& scratch) const {
        const int64_t h_cols = 2 * d_ff;
        bf16_swiglu(d_model, d_ff, n, x, y, scratch, [&](bool w13, const uint16_t* a, float* out) {
            w13 ? cache_.get(Dt::bf16, d_model, h_cols, d_model, h_cols).run(a, b.w13, out, n)
                : cache_.get(Dt::bf16, d_ff, d_model, d_ff, d_model).run(a, b.w2, out, n);
        });
    }

    // dst[:, 0:N] (ldc) = src · W^T with W [N, K] in BF16, src [n, K] (lda) FP32: widens W whole, then one
    // FP32 matmul. Widening in L2-sized panels was no faster at 64 rows and ~30% slower at 2048 (each panel's
    // matmul packs src again).
    void widened_matmul(const uint16_t* w, int64_t k, int64_t n_out, const float* src, int64_t lda, float* dst,
                        int64_t ldc, int64_t n) const {
        thread_local std::vector<float> wide;  // a weight matrix in FP32, reused across calls
        wide.resize(static_cast<size_t>(n_out * k));
        std::transform(w, w + n_out * k, wide.begin(), from_bf16);
        cache_.get(Dt::f32, k, n_out, lda, ldc).run(src, wide.data(), dst, n);
    }

    void forward_widened(const Bf16Weights& b, int64_t d_model, int64_t d_ff, int64_t n, const float* x, float* y,
                         std::vector<float>& scratch) const {
        const int64_t h_cols = 2 * d_ff;
        scratch.resize(static_cast<size_t>(n * (h_cols + d_model)));
        float* h = scratch.data();   // [n, 2 d_ff]
        float* xr = h + n * h_cols;  // [n, d_model]: x rounded to BF16
        for (int64_t i = 0; i < n * d_model; ++i) xr[i] = from_bf16(to_bf16(x[i]));
        widened_matmul(b.w13, d_model, h_cols, xr, d_model, h, h_cols, n);
        silu_mul_rows(h, n, static_cast<int>(d_ff));
        for (int64_t r = 0; r < n; ++r)
            for (int64_t j = 0; j < d_ff; ++j) h[r * h_cols + j] = from_bf16(to_bf16(h[r * h_cols + j]));
        widened_matmul(b.w2, d_ff, d_model, h, h_cols, y, d_model, n);
    }

    bool native_ = false;
    std::string native_impl_;
    mutable MatmulCache cache_;
};

}  // namespace

std::shared_ptr<const MlpKernel> onednn_packed_kernel(const std::string& dtype,
                                                      int panel_kib);  // mlp_onednn_packed.cpp

// The packed kernel where oneDNN's fixed-shape matmul of the dtype is its brgemm (and pack); else the runtime-M
// kernels here. in_place (FP32 only: training, the references): the FP32 weights read as loaded. panel_kib > 0:
// the packed FP32 kernel in panels, or an error naming compute.weight_panel_kib where that kernel does not run.
std::shared_ptr<const MlpKernel> onednn_kernel(const std::string& dtype, bool in_place, bool pack, int panel_kib) {
    if (panel_kib > 0) {
        const auto refuse = [&](const char* why) {
            fail("config key compute.weight_panel_kib = ", panel_kib, ": ", why,
                 " (panels are a way of running the packed onednn/fp32 kernel)");
        };
        if (dtype != "fp32") refuse("compute.dtype is bf16");
        if (in_place) refuse("this command reads the weights as loaded (training updates them)");
        if (!pack) refuse("compute.pack_weights is off");
        std::shared_ptr<const MlpKernel> packed = onednn_packed_kernel(dtype, panel_kib);
        if (!packed) refuse("oneDNN's FP32 matmul is not its brgemm on this CPU");
        return packed;
    }
    if (pack && (dtype == "bf16" || !in_place))
        if (std::shared_ptr<const MlpKernel> packed = onednn_packed_kernel(dtype, 0)) return packed;
    if (dtype == "bf16") return std::make_shared<OneDnnBf16Kernel>();
    return std::make_shared<OneDnnFp32Kernel>();
}

std::string onednn_description() {
    const dnnl_version_t* v = dnnl_version();
    const char* isa = "other";
    switch (dnnl::get_effective_cpu_isa()) {
        case dnnl::cpu_isa::sse41:
            isa = "sse41";
            break;
        case dnnl::cpu_isa::avx:
            isa = "avx";
            break;
        case dnnl::cpu_isa::avx2:
            isa = "avx2";
            break;
        case dnnl::cpu_isa::avx2_vnni:
            isa = "avx2_vnni";
            break;
        case dnnl::cpu_isa::avx512_core:
            isa = "avx512_core";
            break;
        case dnnl::cpu_isa::avx512_core_vnni:
            isa = "avx512_core_vnni";
            break;
        case dnnl::cpu_isa::avx512_core_bf16:
            isa = "avx512_core_bf16";
            break;
        case dnnl::cpu_isa::avx512_core_amx:
            isa = "avx512_core_amx";
            break;
        default:
            break;
    }
    return cat("oneDNN ", v->major, ".", v->minor, ".", v->patch, ", isa ", isa, ", OpenMP");
}

}  // namespace epmoe
