// BrgemmMatmuls (brgemm_matmuls.hpp).
#include "brgemm_matmuls.hpp"

#include <omp.h>

#include <algorithm>
#include <optional>

#include "epmoe/base/error.hpp"
#include "epmoe/ops/bf16.hpp"
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

}  // namespace

std::string BrgemmMatmuls::brgemm_implementation(Dt type) {
    try {
        const std::string impl = fixed_matmul(type, 64, 64, 64, 64).impl_info_str();
        return impl.rfind("brg", 0) == 0 ? impl : std::string();
    } catch (const dnnl::error&) {
        return {};
    }
}

// The weight layout oneDNN's brgemm chooses for a k x n matmul (the same at every row count, measured; each
// primitive is made for this layout).
BrgemmMatmuls::Desc BrgemmMatmuls::layout(int64_t k, int64_t n) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = layouts_.find({k, n});
    if (it == layouts_.end())
        it = layouts_.emplace(std::make_pair(k, n), fixed_matmul(type_, 64, k, n, k).weights_desc()).first;
    return it->second;
}

// W [n, k] row-major (as loaded, FP32) -> W^T [k, n] in the matmul's layout and type.
std::vector<std::byte> BrgemmMatmuls::pack(const float* w, int64_t k, int64_t n) const {
    const Desc to = layout(k, n);
    std::vector<std::byte> out(to.get_size());
    std::vector<uint16_t> rounded;
    const void* from = w;
    if (type_ == Dt::bf16) {
        rounded.resize(static_cast<size_t>(k * n));
        std::transform(w, w + k * n, rounded.begin(), to_bf16);
        from = rounded.data();
    }
    const OneDnnRuntime rt = onednn_runtime();
    dnnl::memory src({{k, n}, type_, {1, k}}, rt.engine, const_cast<void*>(from));
    dnnl::memory dst(to, rt.engine, out.data());
    dnnl::reorder(src, dst).execute(rt.stream, src, dst);
    rt.stream.wait();
    return out;
}

// dst [m, n] = src [m, k] (leading dimension lda) · W.
void BrgemmMatmuls::run(int64_t m, int64_t k, int64_t n, int64_t lda, const void* src, const std::byte* w,
                        float* dst) const {
    const Primitive prim = primitive(m, k, n, lda);
    const OneDnnRuntime rt = onednn_runtime();
    thread_local std::vector<std::byte> pad;  // this thread's scratchpad, grown as needed
    pad.resize(std::max(pad.size(), prim.scratchpad.get_size()));
    dnnl::memory a(src_desc(type_, m, k, lda), rt.engine, const_cast<void*>(src));
    dnnl::memory b(prim.weights, rt.engine, const_cast<std::byte*>(w));
    dnnl::memory c(dst_desc(m, n), rt.engine, dst);
    dnnl::memory scratch(prim.scratchpad, rt.engine, pad.data());
    prim.matmul.execute(rt.stream,
                        {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}, {DNNL_ARG_SCRATCHPAD, scratch}});
    rt.stream.wait();
}

// A brgemm matmul of m rows on the packed weights, made with `threads` threads (oneDNN reads the count then).
BrgemmMatmuls::Primitive BrgemmMatmuls::make_primitive(int64_t m, int64_t k, int64_t n, int64_t lda,
                                                       int threads) const {
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
    return {prim, pd->weights_desc(), pd->scratchpad_desc()};
}

// The matmul of m rows for this thread count, made on first use (0.15-0.3 ms) and kept; the cache is emptied
// when it holds kMaxPrimitives (row counts vary from call to call).
BrgemmMatmuls::Primitive BrgemmMatmuls::primitive(int64_t m, int64_t k, int64_t n, int64_t lda) const {
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

}  // namespace epmoe
