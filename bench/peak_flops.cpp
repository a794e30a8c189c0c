#include "peak_flops.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <random>

#include "../src/ops/amx_tiles.hpp"
#include "epmoe/ops/mlp_kernel.hpp"

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

// Four independent accumulators (tiles 0-3) cover TDPBF16PS's latency; tiles 4-7 hold the operands. a and b
// hold a_steps and b_steps steps of two tiles each (0: load once).
void amx_steps(long iterations, const uint16_t* a, size_t a_steps, const uint16_t* b, size_t b_steps) {
    using namespace epmoe::amx;
    tile_configure();
    tile_zero<0>(), tile_zero<1>(), tile_zero<2>(), tile_zero<3>();
    tile_load<4>(a, 64), tile_load<5>(a + kTileElems, 64), tile_load<6>(b, 64), tile_load<7>(b + kTileElems, 64);
    size_t at_a = 0, at_b = 0;
    for (long i = 0; i < iterations; ++i) {
        if (a_steps > 0) {
            const uint16_t *sa = a + at_a * kStepElems, *sb = b + at_b * kStepElems;
            tile_load<4>(sa, 64), tile_load<6>(sb, 64), tile_load<5>(sa + kTileElems, 64);
            tile_load<7>(sb + kTileElems, 64);
            at_a = at_a + 1 == a_steps ? 0 : at_a + 1;
            at_b = at_b + 1 == b_steps ? 0 : at_b + 1;
        }
        tile_dp<0, 4, 6>(), tile_dp<1, 4, 7>(), tile_dp<2, 5, 6>(), tile_dp<3, 5, 7>();
    }
    alignas(64) float sums[16 * 16];
    tile_store<0>(sums, 64);
    tile_release();
    volatile float sink = sums[0];
    (void)sink;
}

// Random BF16 values in [0.5, 2) for `steps` steps of two tiles (at least one): zeros run faster than real
// data (amx_gemm.cpp).
epmoe::amx::AlignedArray<uint16_t> random_steps(size_t steps, unsigned seed) {
    const size_t elems = std::max<size_t>(steps, 1) * epmoe::amx::kStepElems;
    auto buffer = epmoe::amx::aligned_array<uint16_t>(elems);
    std::mt19937 gen(seed);
    for (size_t i = 0; i < elems; ++i) buffer[i] = static_cast<uint16_t>(0x3f00 + gen() % 0x100);
    return buffer;
}

}  // namespace

double amx_loop(long iterations, size_t a_bytes, size_t b_bytes, std::string& detail) {
    const epmoe::Bf16Support& s = epmoe::bf16_support();
    if (!s.amx_permitted) {
        detail = s.amx_bf16 ? s.amx_detail : "this CPU has no AMX-BF16";
        return 0;
    }
    const size_t step_bytes = epmoe::amx::kStepElems * sizeof(uint16_t);
    const size_t a_steps = a_bytes / step_bytes, b_steps = a_steps > 0 ? std::max<size_t>(b_bytes / step_bytes, 1) : 0;
    auto a = random_steps(a_steps, 7), b = random_steps(b_steps, 8);
    detail = a_steps == 0
                 ? "tiles only"
                 : "A from " + std::to_string(a_bytes >> 10) + " KiB, B from " + std::to_string(b_bytes >> 10) + " KiB";
    amx_steps(iterations, a.get(), a_steps, b.get(), b_steps);
    return 4.0 * 16 * 16 * 32 * 2 * static_cast<double>(iterations);
}

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
