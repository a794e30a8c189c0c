// BrgemmMatmuls (brgemm_matmuls.hpp).
#include "brgemm_matmuls.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>
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
// primitive is made for this layout), and that brgemm's implementation name.
BrgemmMatmuls::Layout BrgemmMatmuls::layout(int64_t k, int64_t n) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = layouts_.find({k, n});
    if (it == layouts_.end()) {
        const dnnl::matmul::primitive_desc pd = fixed_matmul(type_, 64, k, n, k);
        it = layouts_.emplace(std::make_pair(k, n), Layout{pd.weights_desc(), pd.impl_info_str()}).first;
    }
    return it->second;
}

// W [n, k] row-major (as loaded, FP32) -> W^T [k, n] in the matmul's layout and type.
std::vector<std::byte> BrgemmMatmuls::pack(const float* w, int64_t k, int64_t n) const {
    const Desc to = layout(k, n).desc;
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

// dst [m, n] = src [m, k] (leading dimension lda) · W. A primitive made for more rows (make_primitive) runs on
// copies of the rows, zeros below them.
void BrgemmMatmuls::run(int64_t m, int64_t k, int64_t n, int64_t lda, const void* src, const std::byte* w,
                        float* dst) const {
    const Primitive prim = primitive(m, k, n, lda);
    const OneDnnRuntime rt = onednn_runtime();
    thread_local std::vector<std::byte> pad, rows_in;  // this thread's scratchpad and padded rows, grown as needed
    thread_local std::vector<float> rows_out;
    pad.resize(std::max(pad.size(), prim.scratchpad.get_size()));
    const int64_t r = prim.rows;
    if (r > m) {
        const size_t elem = type_ == Dt::bf16 ? 2 : 4, row_bytes = static_cast<size_t>(k) * elem;
        rows_in.assign(static_cast<size_t>(r) * row_bytes, std::byte{0});
        for (int64_t i = 0; i < m; ++i)
            std::memcpy(rows_in.data() + i * row_bytes, static_cast<const std::byte*>(src) + i * lda * elem, row_bytes);
        rows_out.resize(static_cast<size_t>(r * n));
        src = rows_in.data(), lda = k;
    }
    float* out = r > m ? rows_out.data() : dst;
    dnnl::memory a(src_desc(type_, r, k, lda), rt.engine, const_cast<void*>(src));
    dnnl::memory b(prim.weights, rt.engine, const_cast<std::byte*>(w));
    dnnl::memory c(dst_desc(r, n), rt.engine, out);
    dnnl::memory scratch(prim.scratchpad, rt.engine, pad.data());
    prim.matmul.execute(rt.stream,
                        {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}, {DNNL_ARG_SCRATCHPAD, scratch}});
    rt.stream.wait();
    if (r > m) std::copy(out, out + m * n, dst);
}

// A brgemm matmul of m rows on the packed weights, made with `threads` threads (oneDNN reads the count then): the
// implementation the layout was made for, at every m, else (fewer rows than it takes) the same for the fewest
// rows past m it takes, which run() pads to. On an AMX CPU oneDNN runs BF16 on AMX's brgemm but at 1-4 rows on
// avx512_core_bf16's, which sums in another order: a row's bits depended on the rows run with it (seen on the Intel
// Xeon, unit test Compute.PackedRowsDoNotDependOnTheBatch).
BrgemmMatmuls::Primitive BrgemmMatmuls::make_primitive(int64_t m, int64_t k, int64_t n, int64_t lda,
                                                       int threads) const {
    const Layout packed = layout(k, n);
    const int was = omp_get_max_threads();
    omp_set_num_threads(threads);  // this thread's setting only
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    std::optional<dnnl::matmul::primitive_desc> pd;
    dnnl::matmul prim;
    int64_t rows = m;
    try {
        for (; rows < m + 64; ++rows) {
            pd.emplace(
                dnnl::matmul::desc(src_desc(type_, rows, k, rows == m ? lda : k), packed.desc, dst_desc(rows, n)), attr,
                onednn_runtime().engine);
            while (pd->impl_info_str() != packed.impl && pd->next_impl()) {
            }
            if (pd->impl_info_str() == packed.impl) break;
        }
        if (pd->impl_info_str() == packed.impl) prim = dnnl::matmul(*pd);
    } catch (...) {
        omp_set_num_threads(was);
        throw;
    }
    omp_set_num_threads(was);
    if (pd->impl_info_str() != packed.impl)
        fail("oneDNN has no ", packed.impl, " matmul of ", m, " x ", k, " x ", n, " on its packed weights (it chose ",
             pd->impl_info_str(), "); use ", type_ == Dt::bf16 ? "compute.dtype=fp32" : "compute.backend=openblas");
    return {prim, pd->weights_desc(), pd->scratchpad_desc(), rows};
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
