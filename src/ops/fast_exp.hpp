// e^x in plain float (and double) arithmetic the compiler vectorises (std::exp is a scalar libm call), for SiLU,
// the attention softmax and the loss. Private to ops/.
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

// e^x in double for x <= 0, clamped below at -708 (e^-708 ~ 3e-308 stands for smaller values; still normal):
// 2^n * e^r with n = round(x / ln 2) (added to 1.5 * 2^52, which leaves n in the low bits), r = x - n ln 2 in
// fdlibm's two parts, and e^r by its Taylor series to degree 13 (truncation < 1e-17 on |r| <= ln(2)/2).
// Relative error a few 1e-16 (tested against std::exp in tests/unit/ops/test_silu.cpp); plain double
// arithmetic, so loops over it vectorise where std::exp is a scalar libm call.
inline double exp_nonpositive(double x) {
    constexpr double kShift = 6755399441055744.0;  // 1.5 * 2^52
    x = x < -708.0 ? -708.0 : x;
    const double t = x * 1.4426950408889634 + kShift, n = t - kShift;
    const double r = (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
    double p = 1.0 / 6227020800.0;  // 1/13!, then Horner down to 1/0!
    p = p * r + 1.0 / 479001600.0, p = p * r + 1.0 / 39916800.0, p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0, p = p * r + 1.0 / 40320.0, p = p * r + 1.0 / 5040.0, p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0, p = p * r + 1.0 / 24.0, p = p * r + 1.0 / 6.0, p = p * r + 0.5;
    p = p * r + 1.0, p = p * r + 1.0;
    const int64_t n_int = std::bit_cast<int64_t>(t) - std::bit_cast<int64_t>(kShift);
    return p * std::bit_cast<double>((n_int + 1023) << 52);
}

}  // namespace epmoe::fast
