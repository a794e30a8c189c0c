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

// out[r * ld_out + j] = to_bf16(silu(a) * b) with a = ab[r * 2 width + j], b = ab[r * 2 width + width + j],
// for r < rows, j < width: the SwiGLU step of the amx/bf16 kernel's W1|W3 epilogue. Same SiLU (and exp) as
// silu_mul_rows, in FP32 (src/ops/silu.cpp). ab: [rows, 2 width] FP32; out: rows of `width` BF16 values.
void silu_mul_bf16(const float* ab, int rows, int width, uint16_t* out, int64_t ld_out);

}  // namespace epmoe
