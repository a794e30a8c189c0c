#include "epmoe/base/dtype.hpp"

#include <array>
#include <bit>
#include <cstring>

#include "epmoe/base/error.hpp"

namespace epmoe {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian; epmoe reads it as is");

namespace {

struct DTypeEntry {
    DType dtype;
    std::string_view name;
    size_t size;
};

constexpr std::array<DTypeEntry, 10> kDTypes = {{
    {DType::kBool, "BOOL", 1},
    {DType::kU8, "U8", 1},
    {DType::kI8, "I8", 1},
    {DType::kI16, "I16", 2},
    {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2},
    {DType::kI32, "I32", 4},
    {DType::kF32, "F32", 4},
    {DType::kI64, "I64", 8},
    {DType::kF64, "F64", 8},
}};

const DTypeEntry& entry(DType dtype) {
    for (const auto& e : kDTypes)
        if (e.dtype == dtype) return e;
    EPMOE_ASSERT(false && "DType value outside the enum");
    return kDTypes[0];
}

// Loads/stores a T at any alignment.
template <typename T>
T load(const std::byte* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}
template <typename T>
void store(std::byte* p, T v) {
    std::memcpy(p, &v, sizeof(T));
}

}  // namespace

size_t dtype_size(DType dtype) { return entry(dtype).size; }

std::string_view dtype_name(DType dtype) { return entry(dtype).name; }

std::optional<DType> dtype_from_name(std::string_view name) {
    for (const auto& e : kDTypes)
        if (e.name == name) return e.dtype;
    return std::nullopt;
}

bool is_float_dtype(DType dtype) { return dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16; }

std::ostream& operator<<(std::ostream& os, DType dtype) { return os << dtype_name(dtype); }

float bf16_to_f32(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

float f16_to_f32(uint16_t bits) {
    const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
    const uint32_t exponent = (bits >> 10) & 0x1fu;
    const uint32_t mantissa = bits & 0x3ffu;
    if (exponent == 0x1f)  // Inf (mantissa 0) or NaN (payload kept)
        return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
    if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float
        const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
        return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(magnitude));
    }
    // Normal: rebias the exponent from 15 to 127.
    return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

uint16_t f32_to_bf16(float value) {
    const uint32_t bits = std::bit_cast<uint32_t>(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u)  // NaN: keep sign and top payload, force quiet
        return static_cast<uint16_t>((bits >> 16) | 0x0040u);
    const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);  // ties to even
    return static_cast<uint16_t>((bits + rounding) >> 16);
}

uint16_t f32_to_f16(float value) {
    const uint32_t bits = std::bit_cast<uint32_t>(value);
    const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
    const uint32_t abs_bits = bits & 0x7fffffffu;
    if (abs_bits > 0x7f800000u)  // NaN: quiet, keep sign and top payload bits
        return static_cast<uint16_t>(sign | 0x7e00u | ((abs_bits >> 13) & 0x3ffu));
    if (abs_bits >= 0x477ff000u)  // >= 65520 (half-way above the largest half, 65504) or Inf
        return static_cast<uint16_t>(sign | 0x7c00u);
    if (abs_bits >= 0x38800000u) {  // >= 2^-14: a normal half. Rebias 127 -> 15, round to even.
        const uint32_t rebiased = abs_bits - (112u << 23);
        return static_cast<uint16_t>(sign | ((rebiased + 0xfffu + ((rebiased >> 13) & 1u)) >> 13));
    }
    // Subnormal half (or zero): units of 2^-24. A float with biased exponent e is m24 * 2^(e-150).
    const uint32_t biased_exp = abs_bits >> 23;
    if (biased_exp < 102) return sign;  // below 2^-25: rounds to zero
    const uint32_t mantissa = (abs_bits & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - biased_exp;  // 14..24
    uint32_t q = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (q & 1u))) ++q;  // may carry into the smallest normal: correct
    return static_cast<uint16_t>(sign | q);
}

void convert_to_f32(DType dtype, std::span<const std::byte> src, std::span<float> out) {
    EPMOE_ASSERT(is_float_dtype(dtype));
    EPMOE_ASSERT(src.size() == out.size() * dtype_size(dtype));
    const std::byte* p = src.data();
    switch (dtype) {
        case DType::kF32:
            if (!out.empty()) std::memcpy(out.data(), p, src.size());
            break;
        case DType::kBF16:
            for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_f32(load<uint16_t>(p + 2 * i));
            break;
        case DType::kF16:
            for (size_t i = 0; i < out.size(); ++i) out[i] = f16_to_f32(load<uint16_t>(p + 2 * i));
            break;
        default:
            break;
    }
}

void convert_from_f32(std::span<const float> src, DType dtype, std::span<std::byte> out) {
    EPMOE_ASSERT(is_float_dtype(dtype));
    EPMOE_ASSERT(out.size() == src.size() * dtype_size(dtype));
    std::byte* p = out.data();
    switch (dtype) {
        case DType::kF32:
            if (!src.empty()) std::memcpy(p, src.data(), out.size());
            break;
        case DType::kBF16:
            for (size_t i = 0; i < src.size(); ++i) store<uint16_t>(p + 2 * i, f32_to_bf16(src[i]));
            break;
        case DType::kF16:
            for (size_t i = 0; i < src.size(); ++i) store<uint16_t>(p + 2 * i, f32_to_f16(src[i]));
            break;
        default:
            break;
    }
}

}  // namespace epmoe
