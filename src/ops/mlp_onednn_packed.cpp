// onednn/fp32 and onednn/bf16 where oneDNN has a matmul of fixed shape for this CPU in that type (its brgemm, "brg:"
// implementations: avx512_core and up for FP32, avx512_core_bf16 and up for BF16): each MLP's weights are reordered
// once, at prepare, into the blocked layout that matmul reads, which is the same for every row count, and each call
// runs a primitive made for its row count (made on first use, then cached). The runtime-M matmuls of
// mlp_onednn.cpp (gemm:jit) instead repack the weights inside every call. Measured on the expert shapes at one
// thread (AMD EPYC Zen 4): FP32 W1|W3 107-112 GFLOP/s at 128-2048 rows against 86-110, at 16 rows 84-95 against
// 31-50; BF16 (d_model 1024 x 7168) 192 / 194 / 204 / 213 / 217 at 16 / 32 / 64 / 128 / 256 rows against 97 / 134 /
// 162 / 192 / 207. A row's result does not depend on the rows run with it.
#include <omp.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "bf16_swiglu.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/ops/bf16.hpp"
#include "epmoe/ops/mlp_kernel.hpp"
#include "onednn_runtime.hpp"

namespace epmoe {
namespace {

using Dt = dnnl::memory::data_type;
using Desc = dnnl::memory::desc;

// src [m, k] (leading dimension lda) and dst [m, n] row-major; weights W^T [k, n] in the layout the matmul chooses.
// src and weights are of type t (f32 or bf16), dst f32.
Desc src_desc(Dt t, int64_t m, int64_t k, int64_t lda) { return {{m, k}, t, {lda, 1}}; }
Desc dst_desc(int64_t m, int64_t n) { return {{m, n}, Dt::f32, {n, 1}}; }
Desc any_weights(Dt t, int64_t k, int64_t n) { return {{k, n}, t, dnnl::memory::format_tag::any}; }

dnnl::matmul::primitive_desc fixed_matmul(Dt t, int64_t m, int64_t k, int64_t n, int64_t lda) {
    return {dnnl::matmul::desc(src_desc(t, m, k, lda), any_weights(t, k, n), dst_desc(m, n)), onednn_runtime().engine};
}

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
        p->w13_own = pack(w.w13, d_model, 2 * int64_t{d_ff});
        p->w2_own = pack(w.w2, d_ff, d_model);
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
        p->w13_bytes = layout(d_model, 2 * int64_t{d_ff}).get_size(), p->w2_bytes = layout(d_ff, d_model).get_size();
        p->owner = std::move(owner);
        ExpertWeights v;
        v.prepared_bytes = p->w13_bytes + p->w2_bytes;
        v.prepared = std::move(p);
        return v;
    }

private:
    // The weight layout oneDNN's brgemm chooses for a k x n matmul (the same at every row count, measured; each
    // primitive is made for this layout).
    Desc layout(int64_t k, int64_t n) const {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = layouts_.find({k, n});
        if (it == layouts_.end())
            it = layouts_.emplace(std::make_pair(k, n), fixed_matmul(type_, 64, k, n, k).weights_desc()).first;
        return it->second;
    }

    // W [n, k] row-major (as loaded, FP32) -> W^T [k, n] in the matmul's layout and type.
    std::vector<std::byte> pack(const std::vector<float>& w, int64_t k, int64_t n) const {
        const Desc to = layout(k, n);
        std::vector<std::byte> out(to.get_size());
        std::vector<uint16_t> rounded;
        const void* from = w.data();
        if (type_ == Dt::bf16) {
            rounded.resize(w.size());
            std::transform(w.begin(), w.end(), rounded.begin(), to_bf16);
            from = rounded.data();
        }
        const OneDnnRuntime rt = onednn_runtime();
        dnnl::memory src({{k, n}, type_, {1, k}}, rt.engine, const_cast<void*>(from));
        dnnl::memory dst(to, rt.engine, out.data());
        dnnl::reorder(src, dst).execute(rt.stream, src, dst);
        rt.stream.wait();
        return out;
    }

    // A matmul of fixed row count and the scratchpad it needs. The scratchpad is the caller's (scratchpad_mode
    // user): one a primitive owned would be shared by the expert tasks running it at once (seen: rows computed
    // wrong now and then with 2 threads, before this).
    struct Primitive {
        dnnl::matmul matmul;
        Desc scratchpad;
    };

    // dst [m, n] = src [m, k] (leading dimension lda) · W.
    void run(int64_t m, int64_t k, int64_t n, int64_t lda, const void* src, const std::byte* w, float* dst) const {
        const Primitive prim = primitive(m, k, n, lda);
        const OneDnnRuntime rt = onednn_runtime();
        thread_local std::vector<std::byte> pad;  // this thread's scratchpad, grown as needed
        pad.resize(std::max(pad.size(), prim.scratchpad.get_size()));
        dnnl::memory a(src_desc(type_, m, k, lda), rt.engine, const_cast<void*>(src));
        dnnl::memory b(layout(k, n), rt.engine, const_cast<std::byte*>(w));
        dnnl::memory c(dst_desc(m, n), rt.engine, dst);
        dnnl::memory scratch(prim.scratchpad, rt.engine, pad.data());
        prim.matmul.execute(
            rt.stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}, {DNNL_ARG_SCRATCHPAD, scratch}});
        rt.stream.wait();
    }

    // A brgemm matmul of m rows on the packed weights, made with `threads` threads (oneDNN reads the count then).
    Primitive make_primitive(int64_t m, int64_t k, int64_t n, int64_t lda, int threads) const {
        const int was = omp_get_max_threads();
        omp_set_num_threads(threads);  // this thread's setting only
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        std::optional<dnnl::matmul::primitive_desc> pd;
        dnnl::matmul prim;
        try {
            pd.emplace(dnnl::matmul::desc(src_desc(type_, m, k, lda), layout(k, n), dst_desc(m, n)), attr,
                       onednn_runtime().engine);
            prim = dnnl::matmul(*pd);
        } catch (...) {
            omp_set_num_threads(was);
            throw;
        }
        omp_set_num_threads(was);
        if (std::string(pd->impl_info_str()).rfind("brg", 0) != 0)
            fail("oneDNN has no brgemm matmul of ", m, " x ", k, " x ", n, " on its packed weights (it chose ",
                 pd->impl_info_str(), "); use ", type_ == Dt::bf16 ? "compute.dtype=fp32" : "compute.backend=openblas");
        return {prim, pd->scratchpad_desc()};
    }

    // The matmul of m rows for this thread count, made on first use (0.15-0.3 ms) and kept; the cache is emptied
    // when it holds kMaxPrimitives (row counts vary from call to call).
    Primitive primitive(int64_t m, int64_t k, int64_t n, int64_t lda) const {
        static constexpr size_t kMaxPrimitives = 4096;
        // oneDNN's brgemm fixes its threads when the primitive is made: inside an expert task (an OpenMP parallel
        // region) one, so that a task computes what one thread computes alone (run_tasks' promise).
        const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
        const auto key = std::make_tuple(m, k, n, lda, threads);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            auto it = primitives_.find(key);
            if (it != primitives_.end()) return it->second;
        }
        const Primitive prim = make_primitive(m, k, n, lda, threads);
        std::lock_guard<std::mutex> lock(mutex_);
        if (primitives_.size() >= kMaxPrimitives) primitives_.clear();
        primitives_.emplace(key, prim);
        return prim;
    }

    Dt type_;
    std::string impl_;
    mutable std::mutex mutex_;
    mutable std::map<std::pair<int64_t, int64_t>, Desc> layouts_;
    mutable std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int>, Primitive> primitives_;
};

}  // namespace

// The packed kernel of dtype ("fp32" or "bf16"), or null where oneDNN's fixed-shape matmul of that type is not its
// brgemm on this CPU (there the runtime-M kernels of mlp_onednn.cpp run).
std::shared_ptr<const MlpKernel> onednn_packed_kernel(const std::string& dtype) {
    const Dt type = dtype == "bf16" ? Dt::bf16 : Dt::f32;
    try {
        const std::string impl = fixed_matmul(type, 64, 64, 64, 64).impl_info_str();
        if (impl.rfind("brg", 0) != 0) return nullptr;
        return std::make_shared<PackedKernel>(type, impl);
    } catch (const dnnl::error&) {
        return nullptr;
    }
}

}  // namespace epmoe
