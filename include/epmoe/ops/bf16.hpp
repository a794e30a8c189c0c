// BF16 rounding shared by the BF16 kernels (onednn/bf16, amx/bf16), and the SwiGLU step that writes BF16.
// Pure compute; no MPI.
#pragma once

#include <bit>
#include <cstdint>

namespace epmoe {

// FP32 -> BF16, round to nearest even; a NaN stays a (quiet) NaN, with its sign and top payload bits.
inline uint16_t to_bf16(float f) {
    uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
}

// BF16 -> FP32, exact.
inline float from_bf16(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

// src [rows, cols] FP32 with leading dimension ld_src -> dst [rows, cols] BF16, contiguous (to_bf16).
inline void rows_to_bf16(const float* src, int64_t rows, int64_t cols, int64_t ld_src, uint16_t* dst) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < cols; ++j) dst[r * cols + j] = to_bf16(src[r * ld_src + j]);
}

// MXCSR flush-to-zero and denormals-are-zero for its scope (the amx/bf16 kernel's forward). GCC if-converts
// exp_vectorisable's clamp (src/ops/silu.cpp) by computing the clamped branches too and blending:
// a / (1 + e^88) in a lane with |a| < 2 is a subnormal whatever the lane keeps, and each subnormal result
// costs a microcode assist (measured: 2.8-3.4 us for 32x16 values instead of 0.25). Values kept change only
// below 2^-126, which become 0: the kernel's TDPBF16PS reads BF16 subnormals as 0 anyway.
class FlushSubnormals {
public:
    FlushSubnormals() {
        asm volatile("stmxcsr %0" : "=m"(saved_)::"memory");
        const uint32_t flush = saved_ | 0x8040u;  // FTZ (bit 15) | DAZ (bit 6)
        asm volatile("ldmxcsr %0" ::"m"(flush) : "memory");
    }
    ~FlushSubnormals() { asm volatile("ldmxcsr %0" ::"m"(saved_) : "memory"); }
    FlushSubnormals(const FlushSubnormals&) = delete;
    FlushSubnormals& operator=(const FlushSubnormals&) = delete;

private:
    uint32_t saved_ = 0;
};

// 8 rows of a 32x16 block of the amx/bf16 kernel's W1|W3 epilogue: out[r * ld_out + j] = to_bf16(silu(g) * u)
// with g = ab[r][j], u = ab[r][16 + j], r < 8, j < 16. ab: [8][32] FP32 (gate | up); out: 8 rows of 16 BF16.
// Same SiLU and exp as silu_mul_rows (src/ops/silu.cpp), in FP32. Run it under FlushSubnormals (else slow).
constexpr int kSiluBlockRows = 8, kSiluBlockCols = 16;
void silu_mul_bf16_block(const float* ab, uint16_t* out, int64_t ld_out);

}  // namespace epmoe
