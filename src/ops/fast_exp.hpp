// e^x in plain float arithmetic the compiler vectorises (std::exp is a scalar libm call), for SiLU and the
// attention softmax. Private to ops/.
#pragma once

#include <bit>
#include <cstdint>

namespace epmoe::fast {

// e^x for x already clamped to [-87, 88] (so the result stays a normal float): 2^n * e^r with
// n = round(x / ln 2), r = x - n ln 2 in two parts (Cody-Waite), and Cephes' degree-6 polynomial for e^r on
// |r| <= ln(2)/2. Relative error about 1e-7 (tested against std::exp in tests/unit/ops/test_silu.cpp).
inline float exp_clamped(float x) {
    constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to the nearest integer
    const float n = (x * 1.44269504088896341f + kRound) - kRound;
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return p * std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
}

}  // namespace epmoe::fast
