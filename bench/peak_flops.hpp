// The peaks of one core, measured, so the GEMM figures sit beside a measured limit, not a spec sheet: FP32, a
// loop of independent fused multiply-adds in the widest vectors this CPU runs (AVX-512, else AVX2+FMA); AMX
// BF16, a loop of independent tile multiplies (TDPBF16PS), with its operands in tiles or streamed from memory.
#pragma once

#include <string>

namespace epmoe::bench {

// Runs `iterations` rounds of 12 independent vector FMA chains. Returns the FLOPs done (2 per lane per
// FMA); the caller times it. isa receives "avx512f", "avx2+fma" or "scalar".
double fma_loop(long iterations, std::string& isa);

// Runs `iterations` steps of epmoe's AMX micro-kernel (amx/bf16): four accumulator tiles, each step four
// TDPBF16PS on two A and two B tiles. a_bytes 0: the operand tiles are loaded once (the tile unit's peak);
// otherwise each step loads its two A tiles from the next 2 KiB of a buffer of a_bytes and its two B tiles from
// one of b_bytes, each cycling (A from 1 MiB and B from 16 KiB: where amx_gemm.cpp's blocking keeps them, L2 and
// L1). Returns the FLOPs done (16 x 16 x 32 x 2 a TDPBF16PS), or 0 where AMX cannot run (detail says why).
double amx_loop(long iterations, size_t a_bytes, size_t b_bytes, std::string& detail);

}  // namespace epmoe::bench
