// DType conversions (src/base/dtype.cpp): exhaustive over all 65536 BF16 and F16 patterns, rounding against
// independent references (exact double arithmetic, numpy's float16 from a fixture, and the compiler's _Float16).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>

#include "epmoe/base/dtype.hpp"
#include "epmoe/io/safetensors.hpp"

namespace {

using namespace epmoe;

bool f16_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
bool bf16_is_nan(uint16_t b) { return (b & 0x7f80u) == 0x7f80u && (b & 0x7fu) != 0; }

TEST(DType, NamesSizesAndParsing) {
    for (DType d : {DType::kBool, DType::kU8, DType::kI8, DType::kI16, DType::kF16, DType::kBF16, DType::kI32,
                    DType::kF32, DType::kI64, DType::kF64})
        EXPECT_EQ(dtype_from_name(dtype_name(d)), d) << dtype_name(d);
    EXPECT_EQ(dtype_size(DType::kBF16), 2u);
    EXPECT_EQ(dtype_size(DType::kF64), 8u);
    EXPECT_EQ(dtype_size(DType::kBool), 1u);
    EXPECT_EQ(dtype_from_name("F8_E4M3"), std::nullopt);
    EXPECT_EQ(dtype_from_name("f32"), std::nullopt);
    EXPECT_TRUE(is_float_dtype(DType::kF16));
    EXPECT_FALSE(is_float_dtype(DType::kF64));
}

TEST(DType, Bf16AllPatternsRoundTrip) {
    for (uint32_t b = 0; b < 65536; ++b) {
        const auto bits = static_cast<uint16_t>(b);
        const float f = bf16_to_f32(bits);
        ASSERT_EQ(std::bit_cast<uint32_t>(f), b << 16) << b;  // widening is exact
        const uint16_t back = f32_to_bf16(f);
        if (bf16_is_nan(bits)) {
            ASSERT_TRUE(std::isnan(f)) << b;
            ASSERT_TRUE(bf16_is_nan(back)) << b;
            ASSERT_EQ(back & 0x8000u, bits & 0x8000u) << b;
        } else {
            ASSERT_EQ(back, bits) << b;
        }
    }
}

// Independent formula for the value of a binary16 pattern.
double f16_value(uint16_t h) {
    const int e = (h >> 10) & 31, m = h & 1023;
    const double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 31) return m ? std::nan("") : sign * INFINITY;
    if (e == 0) return sign * std::ldexp(m, -24);
    return sign * std::ldexp(1024 + m, e - 25);
}

TEST(DType, F16AllPatternsRoundTrip) {
    for (uint32_t b = 0; b < 65536; ++b) {
        const auto bits = static_cast<uint16_t>(b);
        const float f = f16_to_f32(bits);
        const uint16_t back = f32_to_f16(f);
        if (f16_is_nan(bits)) {
            ASSERT_TRUE(std::isnan(f)) << b;
            ASSERT_TRUE(f16_is_nan(back)) << b;
            ASSERT_EQ(back & 0x8000u, bits & 0x8000u) << b;
        } else {
            ASSERT_EQ(static_cast<double>(f), f16_value(bits)) << b;
            ASSERT_EQ(std::signbit(f), (b & 0x8000u) != 0) << b;  // -0 stays -0
            ASSERT_EQ(back, bits) << b;
        }
    }
}

// Round-to-nearest-even of float `x` to bfloat16, by exact double arithmetic on the two candidates.
uint16_t bf16_reference(float x) {
    const uint32_t u = std::bit_cast<uint32_t>(x);
    const uint32_t sign = u & 0x80000000u, mag = u & 0x7fffffffu;
    const uint32_t lo = mag >> 16;  // truncation toward zero
    const double lo_v = std::bit_cast<float>(lo << 16);
    const int exp = static_cast<int>(lo >> 7);
    const double ulp = std::ldexp(1.0, (exp == 0 ? 1 : exp) - 127 - 7);
    const double d = std::fabs(static_cast<double>(x)) - lo_v;  // in [0, ulp)
    uint32_t r = lo;
    if (d > ulp / 2 || (d == ulp / 2 && (lo & 1u))) r = lo + 1;  // lo + 1 may be +Inf: correct
    return static_cast<uint16_t>((sign >> 16) | r);
}

TEST(DType, F32ToBf16RoundsToNearestEven) {
    std::mt19937 rng(1);
    std::vector<uint32_t> inputs = {0x3f808000u, 0x3f818000u, 0x3f808001u, 0x3f807fffu, 0x7f7fffffu, 0x7f7f7fffu,
                                    0x7f7f8000u, 0x00008000u, 0x00018000u, 0x00000001u, 0x80000000u, 0x7f800000u};
    for (int i = 0; i < 1'000'000; ++i) inputs.push_back(rng());
    for (uint32_t u : inputs) {
        const float x = std::bit_cast<float>(u);
        if (std::isnan(x)) {
            EXPECT_TRUE(bf16_is_nan(f32_to_bf16(x))) << std::hex << u;
            continue;
        }
        if (std::isinf(x)) continue;
        ASSERT_EQ(f32_to_bf16(x), bf16_reference(x)) << std::hex << u;
    }
    EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f808000u)), 0x3f80u);  // tie 1 + 2^-8 -> 1 (even)
    EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f818000u)), 0x3f82u);  // tie -> up to even
    EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x7f7fffffu)), 0x7f80u);  // FLT_MAX -> +Inf
    EXPECT_EQ(f32_to_bf16(-INFINITY), 0xff80u);
}

TEST(DType, F16AgainstNumpyFixture) {
    const auto f = SafetensorsFile::open(std::string(EPMOE_FIXTURES) + "/safetensors/f16_reference.safetensors");
    auto u16 = [&](const std::string& name) {
        const auto raw = f.raw(f.at(name));
        std::vector<uint16_t> v(raw.size() / 2);
        std::memcpy(v.data(), raw.data(), raw.size());
        return v;
    };
    auto f32 = [&](const std::string& name) {
        const auto raw = f.raw(f.at(name));
        std::vector<float> v(raw.size() / 4);
        std::memcpy(v.data(), raw.data(), raw.size());
        return v;
    };
    const auto halves = u16("f16");
    const auto widened = f32("f16.as_f32");
    ASSERT_EQ(halves.size(), 640u);
    for (size_t i = 0; i < halves.size(); ++i) {
        if (std::isnan(widened[i]))
            EXPECT_TRUE(std::isnan(f16_to_f32(halves[i]))) << i;
        else
            EXPECT_EQ(std::bit_cast<uint32_t>(f16_to_f32(halves[i])), std::bit_cast<uint32_t>(widened[i])) << i;
    }
    const auto floats = f32("f32");
    const auto narrowed = u16("f32.as_f16");
    ASSERT_EQ(floats.size(), narrowed.size());
    ASSERT_GT(floats.size(), 700u);
    for (size_t i = 0; i < floats.size(); ++i) {
        if (std::isnan(floats[i]))
            EXPECT_TRUE(f16_is_nan(f32_to_f16(floats[i]))) << i;
        else
            EXPECT_EQ(f32_to_f16(floats[i]), narrowed[i]) << i << ": " << floats[i];
    }
}

#ifdef __FLT16_MANT_DIG__
TEST(DType, F32ToF16MatchesCompilerFloat16) {
    std::mt19937 rng(2);
    for (int i = 0; i < 1'000'000; ++i) {
        // Bias toward the half range: exponents near 127 +- 30.
        const uint32_t u = (rng() & 0x807fffffu) | ((97u + rng() % 60u) << 23);
        const float x = std::bit_cast<float>(u);
        const auto expected = std::bit_cast<uint16_t>(static_cast<_Float16>(x));
        ASSERT_EQ(f32_to_f16(x), expected) << std::hex << u;
    }
}
#endif

TEST(DType, BufferConversionsAtAnyAlignment) {
    const std::vector<float> values = {1.0f, -0.0f, 3.140625f, -65504.0f, 1e-7f, INFINITY};
    for (DType d : {DType::kF32, DType::kBF16, DType::kF16}) {
        std::vector<std::byte> storage(values.size() * dtype_size(d) + 3);
        const std::span<std::byte> bytes(storage.data() + 1, values.size() * dtype_size(d));  // misaligned
        convert_from_f32(values, d, bytes);
        std::vector<float> back(values.size());
        convert_to_f32(d, bytes, back);
        for (size_t i = 0; i < values.size(); ++i) {
            const float expected = d == DType::kF32    ? values[i]
                                   : d == DType::kBF16 ? bf16_to_f32(f32_to_bf16(values[i]))
                                                       : f16_to_f32(f32_to_f16(values[i]));
            EXPECT_EQ(std::bit_cast<uint32_t>(back[i]), std::bit_cast<uint32_t>(expected)) << dtype_name(d) << i;
        }
    }
    EXPECT_EQ(f16_to_f32(f32_to_f16(1e-7f)), std::ldexp(2.0f, -24));  // nearest subnormal half: 2 * 2^-24
}

}  // namespace
