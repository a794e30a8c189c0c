#include "peak_flops.hpp"

#include <immintrin.h>

namespace epmoe::bench {
namespace {

constexpr int kChains = 12;  // > FMA latency (4) x FMA ports (2): keeps every FMA unit busy

__attribute__((target("avx512f"))) float loop_avx512(long iterations) {
    __m512 acc[kChains];
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(0.001f * c);
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (long i = 0; i < iterations; ++i)
        for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    __m512 sum = acc[0];
    for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
    float lanes[16];
    _mm512_storeu_ps(lanes, sum);
    return lanes[0] + lanes[15];
}

__attribute__((target("avx2,fma"))) float loop_avx2(long iterations) {
    __m256 acc[kChains];
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(0.001f * c);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iterations; ++i)
        for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    __m256 sum = acc[0];
    for (int c = 1; c < kChains; ++c) sum = _mm256_add_ps(sum, acc[c]);
    float lanes[8];
    _mm256_storeu_ps(lanes, sum);
    return lanes[0] + lanes[7];
}

}  // namespace

double fma_loop(long iterations, std::string& isa) {
    volatile float sink = 0;
    if (__builtin_cpu_supports("avx512f")) {
        isa = "avx512f";
        sink = loop_avx512(iterations);
        return 2.0 * 16 * kChains * static_cast<double>(iterations);
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        isa = "avx2+fma";
        sink = loop_avx2(iterations);
        return 2.0 * 8 * kChains * static_cast<double>(iterations);
    }
    isa = "scalar";
    float acc = sink;
    for (long i = 0; i < iterations; ++i) acc = acc * 0.999999f + 1e-7f;
    sink = acc;
    return 2.0 * static_cast<double>(iterations);
}

}  // namespace epmoe::bench
