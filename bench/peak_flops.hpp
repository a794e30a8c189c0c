// The FP32 peak of one core, measured: a loop of independent fused multiply-adds in the widest vectors
// this CPU runs (AVX-512, else AVX2+FMA), so the GEMM figures sit beside a measured limit, not a spec sheet.
#pragma once

#include <string>

namespace epmoe::bench {

// Runs `iterations` rounds of 12 independent vector FMA chains. Returns the FLOPs done (2 per lane per
// FMA); the caller times it. isa receives "avx512f", "avx2+fma" or "scalar".
double fma_loop(long iterations, std::string& isa);

}  // namespace epmoe::bench
