// silu_mul_rows, silu_mul_backward_rows (mlp_kernel.hpp) and silu_mul_bf16_block (bf16.hpp) with an exp the
// compiler vectorises.
// std::exp is a scalar libm call: on the expert shapes (d_ff 3584) it made the SwiGLU pass 5-6 % of a whole
// expert's time; this one runs in the vector units of the widest ISA the CPU has (target_clones picks at
// load time).
#include <bit>
#include <cstdint>

#include "epmoe/ops/bf16.hpp"
#include "epmoe/ops/mlp_kernel.hpp"
#include "fast_exp.hpp"

namespace epmoe {
namespace {

// The clamp of exp_vectorisable, [-87, 88], as values GCC cannot see through. With literal bounds GCC
// if-converts the clamp by running the rest of the SiLU on the bounds too: a second division,
// a / (1 + e^88), in every lane, whose subnormal results (|a| < 2) each cost a microcode assist (measured:
// silu_mul_rows 1.9 us for 512 values, 0.2 us with opaque bounds; results bit-identical). Call it outside
// the loops: an asm inside a loop stops its vectorisation.
struct ExpClamp {
    float lo = -87.0f, hi = 88.0f;
};
inline ExpClamp opaque_clamp() {
    ExpClamp c;
    asm("" : "+x"(c.lo), "+x"(c.hi));
    return c;
}

// e^x for any finite float x, clamped to [c.lo, c.hi] = [-87, 88] (fast_exp.hpp).
inline float exp_vectorisable(float x, ExpClamp c) { return fast::exp_clamped(x < c.lo ? c.lo : x > c.hi ? c.hi : x); }

inline float silu_mul(float a, float b, ExpClamp c) { return a / (1.0f + exp_vectorisable(-a, c)) * b; }

}  // namespace

__attribute__((target_clones("avx512f", "avx2", "default"))) void silu_mul_rows(float* h, int64_t num_tokens,
                                                                                int d_ff) {
    const size_t cols = 2 * static_cast<size_t>(d_ff);
    const ExpClamp clamp = opaque_clamp();
    for (int64_t t = 0; t < num_tokens; ++t) {
        float* __restrict a = h + static_cast<size_t>(t) * cols;
        const float* __restrict b = a + d_ff;  // the two halves of a row do not overlap
        for (int j = 0; j < d_ff; ++j) a[j] = silu_mul(a[j], b[j], clamp);
    }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void silu_mul_rows_to(const float* h, float* act,
                                                                                   int64_t num_tokens, int d_ff,
                                                                                   int64_t act_ld) {
    const size_t f = static_cast<size_t>(d_ff);
    const ExpClamp clamp = opaque_clamp();
    for (int64_t t = 0; t < num_tokens; ++t) {
        const float* __restrict a = h + static_cast<size_t>(t) * 2 * f;
        const float* __restrict b = a + f;
        float* __restrict out = act + static_cast<size_t>(t * act_ld);
        for (size_t j = 0; j < f; ++j) out[j] = silu_mul(a[j], b[j], clamp);
    }
}

// silu'(a) = sig (1 + a (1 - sig)), sig = 1 / (1 + e^-a); the exp as silu_mul's (std::exp made this pass about
// 3 % of a training step).
__attribute__((target_clones("avx512f", "avx2", "default"))) void silu_mul_backward_rows(const float* h13, float* dh13,
                                                                                         float* act, int64_t num_tokens,
                                                                                         int d_ff) {
    const size_t f = static_cast<size_t>(d_ff);
    const ExpClamp clamp = opaque_clamp();
    for (int64_t t = 0; t < num_tokens; ++t) {
        const float* __restrict a = h13 + static_cast<size_t>(t) * 2 * f;
        const float* __restrict b = a + f;
        float* __restrict da = dh13 + static_cast<size_t>(t) * 2 * f;  // holds dact until overwritten
        float* __restrict db = da + f;
        float* __restrict out = act + static_cast<size_t>(t) * f;
        for (size_t j = 0; j < f; ++j) {
            const float sig = 1.0f / (1.0f + exp_vectorisable(-a[j], clamp)), silu = a[j] * sig, dact = da[j];
            out[j] = silu * b[j];
            db[j] = dact * silu;
            da[j] = dact * b[j] * sig * (1.0f + a[j] * (1.0f - sig));
        }
    }
}

// Two passes with fixed trip counts (FP32, then to BF16): the x86-64-v4 clone runs both in 512-bit vectors,
// 0.25 us for 32 rows under FlushSubnormals (one pass mixing float and uint16: 0.31 us; without the flush,
// 2.8-3.4 us: see FlushSubnormals).
__attribute__((target_clones("arch=x86-64-v4", "avx2", "default"))) void silu_mul_bf16_block(const float* ab,
                                                                                             uint16_t* out,
                                                                                             int64_t ld_out) {
    constexpr int kRows = kSiluBlockRows, kCols = kSiluBlockCols;
    const ExpClamp clamp = opaque_clamp();
    float h[kRows * kCols];
    for (int r = 0; r < kRows; ++r)
        for (int j = 0; j < kCols; ++j)
            h[r * kCols + j] = silu_mul(ab[r * 2 * kCols + j], ab[r * 2 * kCols + kCols + j], clamp);
    for (int r = 0; r < kRows; ++r)
        for (int j = 0; j < kCols; ++j) out[r * ld_out + j] = to_bf16(h[r * kCols + j]);
}

}  // namespace epmoe
