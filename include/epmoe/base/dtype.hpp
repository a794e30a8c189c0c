// Element types of safetensors files and the conversions between them and float.
// Pure compute: no I/O, no MPI. Every conversion reads and writes through memcpy, so the byte
// buffers may have any alignment (safetensors packs tensors back to back).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <ostream>
#include <span>
#include <string_view>

namespace epmoe {

// The safetensors dtypes epmoe knows. F32, BF16 and F16 convert to float; the others can be read
// raw (I32 also through SafetensorsFile::read_i32) or skipped.
enum class DType : uint8_t { kBool, kU8, kI8, kI16, kF16, kBF16, kI32, kF32, kI64, kF64 };

// Bytes per element: 1, 2, 4 or 8.
size_t dtype_size(DType dtype);

// The safetensors spelling of the dtype: "F32", "BF16", "BOOL", ...
std::string_view dtype_name(DType dtype);

// Parses a safetensors dtype string ("F32", ...); nullopt for any string epmoe does not know.
std::optional<DType> dtype_from_name(std::string_view name);

// True for F32, BF16 and F16: the dtypes that convert_to_f32 and convert_from_f32 handle.
bool is_float_dtype(DType dtype);

// Prints dtype_name(dtype).
std::ostream& operator<<(std::ostream& os, DType dtype);

// bfloat16 bits -> float. Exact for every pattern (NaN payloads are kept).
float bf16_to_f32(uint16_t bits);

// IEEE binary16 bits -> float. Exact for every pattern: subnormals, +-0, +-Inf, NaN (stays NaN).
float f16_to_f32(uint16_t bits);

// float -> bfloat16 bits, rounding to nearest even; overflow gives +-Inf; NaN gives a quiet NaN.
uint16_t f32_to_bf16(float value);

// float -> IEEE binary16 bits, rounding to nearest even (subnormal results too); |value| >= 65520
// gives +-Inf; NaN gives a quiet NaN with the same sign.
uint16_t f32_to_f16(float value);

// Converts out.size() little-endian elements of `dtype` (F32, BF16 or F16) to float.
// @param src  out.size() * dtype_size(dtype) bytes, any alignment.
void convert_to_f32(DType dtype, std::span<const std::byte> src, std::span<float> out);

// Converts src.size() floats to little-endian `dtype` (F32, BF16 or F16), rounding to nearest even.
// @param out  src.size() * dtype_size(dtype) bytes, any alignment.
void convert_from_f32(std::span<const float> src, DType dtype, std::span<std::byte> out);

}  // namespace epmoe
