// The GEMM backend behind every SwiGLU MLP (routed experts, dense layers, shared experts): one small
// interface, picked by compute.backend and compute.dtype. Pure compute; no MPI.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace epmoe {

// One SwiGLU expert: y = W2 · (silu(W1 · x) ⊙ (W3 · x)).
struct ExpertWeights {
    std::vector<float> w13;  // [2 * d_ff, d_model]: rows [0, d_ff) are W1 (gate_proj), [d_ff, 2 d_ff) W3 (up_proj)
    std::vector<float> w2;   // [d_model, d_ff] (down_proj)
    // The kernel's own form of the weights (e.g. BF16, or reordered for its GEMM), set by MlpKernel::prepare;
    // null when the kernel reads w13 and w2. A kernel that sets it may empty w13 and w2.
    std::shared_ptr<const void> prepared;
    uint64_t prepared_bytes = 0;  // bytes held by `prepared`
};

// The bytes of one MLP's weights in a kernel's form (MlpKernel::arrays).
struct MlpArrays {
    std::span<const std::byte> w13, w2;
};

// Runs y = W2 · (silu(W1 · x) ⊙ (W3 · x)) on one backend in one precision.
class MlpKernel {
public:
    virtual ~MlpKernel() = default;
    // "<backend>/<dtype>", e.g. "openblas/fp32", as shown by `epmoe info` and summary.json.
    virtual std::string name() const = 0;
    // What runs underneath, e.g. oneDNN's implementation name ("gemm:jit", "brg:avx512_core_bf16").
    virtual std::string implementation() const = 0;
    // Turns one MLP's FP32 weights (w13 [2 d_ff, d_model], w2 [d_model, d_ff]) into the form forward()
    // reads. Called once per MLP right after it is loaded; may replace the FP32 copies (BF16 halves them).
    virtual void prepare(ExpertWeights& w, int d_model, int d_ff) const = 0;
    // x, y: [num_tokens, d_model]; scratch is reused across calls and may be resized.
    virtual void forward(const ExpertWeights& w, int d_model, int d_ff, std::span<const float> x, std::span<float> y,
                         std::vector<float>& scratch) const = 0;
    // The two arrays forward() reads of prepared weights (W1|W3, then W2), in the kernel's own form: what a host's
    // shared window holds so that every rank of the host can run the MLP (model/host_experts.hpp). The default
    // (and view's) fails: a kernel whose weights cannot be shared.
    virtual MlpArrays arrays(const ExpertWeights& w, int d_model, int d_ff) const;
    // Weights whose forward() reads w13 and w2 where they are (laid out as arrays() gave them, each 64-byte
    // aligned), no copy; `owner` keeps that memory alive as long as the weights are. prepared_bytes = their bytes.
    virtual ExpertWeights view(const std::byte* w13, const std::byte* w2, int d_model, int d_ff,
                               std::shared_ptr<const void> owner) const;
};

// What this CPU and process offer for BF16, probed once (the first call asks Linux for the AMX tile state).
struct Bf16Support {
    bool avx512_bf16 = false;    // AVX512-BF16 (CPUID 7.1 EAX[5]) with the AVX-512 state enabled by the OS
    bool amx_bf16 = false;       // AMX-TILE and AMX-BF16 (CPUID 7.0 EDX[24, 22]) with the tile state in XCR0
    bool amx_permitted = false;  // Linux granted the tile data state: arch_prctl(ARCH_REQ_XCOMP_PERM, 18)
    std::string amx_detail;      // why AMX cannot run here; empty when it can
};
const Bf16Support& bf16_support();

// The backend compute.backend = auto runs for a dtype: a fixed rule from measurements (docs/reference.md, "Compute
// backends"), never a timing at start-up, so reruns are bit-identical. bf16: amx where the CPU has AMX-BF16 and
// Linux granted the tile state (bf16_support()), else onednn. Other backends are returned as given.
std::string resolve_backend(const std::string& backend, const std::string& dtype);

// The kernel of compute.backend (auto | openblas | onednn | amx) and compute.dtype (fp32 | bf16); fails naming
// the key and value for a pair this build or CPU cannot run (openblas has no bf16, amx no fp32, amx needs AMX).
// onednn/fp32 packs the weights at prepare (and drops the loaded copies) where oneDNN's fixed-shape matmul is its
// brgemm; in_place asks for a kernel that reads w13 and w2 as loaded instead (training: its weights change).
// pack false (compute.pack_weights = off): neither onednn kernel packs; both run the runtime-M matmuls.
// panel_kib > 0 (compute.weight_panel_kib): the packed onednn/fp32 kernel with its weights in column panels of about
// that many KiB, each run over all the rows before the next; an error naming the key where that kernel does not run.
std::shared_ptr<const MlpKernel> make_mlp_kernel(const std::string& backend, const std::string& dtype,
                                                 bool in_place = false, bool pack = true, int panel_kib = 0);

// The FP32 kernel of compute.backend = auto reading the weights as loaded (in_place): what a Model uses unless
// told otherwise (the commands pass the kernel of their config).
const std::shared_ptr<const MlpKernel>& default_mlp_kernel();

// Threads of each GEMM library in this process (OpenBLAS's pool and oneDNN's OpenMP), from
// resources.threads_per_rank; call before the first GEMM.
void set_compute_threads(int threads);

// Runs task(i, slot) for every i in [0, count) on up to `threads` threads (OpenMP), a task at a time per
// thread, in order of i as threads come free; slot in [0, threads) names the thread running it (its scratch).
// Each task's GEMMs run on its own thread alone: OpenBLAS is held to one thread meanwhile and oneDNN's OpenMP
// does not nest, so a task computes the same bits as with one thread in all. Rethrows the first exception a
// task threw, after every thread has stopped. threads <= 1: a plain loop on the caller's thread (a lone task with
// more threads still runs as a task, on one thread).
void run_tasks(int threads, size_t count, const std::function<void(size_t task, int slot)>& task);

// oneDNN's version, the instruction set it uses on this CPU and its threading runtime, for `epmoe info`.
std::string onednn_description();

// h[t, j] = silu(h[t, j]) * h[t, d_ff + j] for j < d_ff, in place over the left half of each row.
// h: [num_tokens, 2 * d_ff] (W1·x | W3·x); the left half becomes W2's input, leading dimension 2 * d_ff.
void silu_mul_rows(float* h, int64_t num_tokens, int d_ff);
// The same into act [num_tokens, d_ff] (rows act_ld apart; act_ld = d_ff: contiguous), h left as it was
// (training keeps W1·x | W3·x for the backward; a panel of d_ff columns writes its columns of a wider act).
void silu_mul_rows_to(const float* h, float* act, int64_t num_tokens, int d_ff, int64_t act_ld);

// The SwiGLU's backward through silu(a) * b, a row at a time: h13 [num_tokens, 2 d_ff] holds a | b (W1·x | W3·x),
// dh13 [num_tokens, 2 d_ff] holds dact (the gradient of silu(a) * b) in its left half and receives da | db;
// act [num_tokens, d_ff] receives silu(a) * b (W2's input, for W2's gradient).
void silu_mul_backward_rows(const float* h13, float* dh13, float* act, int64_t num_tokens, int d_ff);

}  // namespace epmoe
