// The FP32 GEMMs of the dense parts (linear layers, the LM head, attention) and of training (the SwiGLU forward
// and backward of every MLP, the router's backward): oneDNN's dnnl_sgemm, row-major as cblas_sgemm is. On the
// training shapes of bench/RESULTS.md it ran 3-11 % faster than Debian's OpenBLAS 0.3.21 sgemm at one thread
// (2-vCPU AMD EPYC, Zen 4), the same or faster at attention's small shapes; the inference experts keep their
// kernel (compute.backend). One exception, by measurement: where OpenBLAS runs an AVX-512 core (SkylakeX,
// CooperLake, SapphireRapids), the weight-gradient products (a transposed, not b) of more than 2^26
// multiply-adds go to OpenBLAS's cblas_sgemm: on the 2-vCPU Intel Xeon (AMX, OpenBLAS core SkylakeX) at one
// thread these ran at 161-178 GFLOP/s there against 155-157 in dnnl_sgemm (the bench's training step, 2 runs
// of 3 steps); the smaller ones, and every other shape, were as fast or faster in oneDNN. The choice depends on
// the CPU and OPENBLAS_CORETYPE alone, so a machine's runs give the same bits. Private to src/ops.
#pragma once

#include <cstdint>

namespace epmoe {

// c [m, n] = alpha op(a) op(b) + beta c, op(x) = x^T where trans_x; row-major with leading dimensions lda, ldb, ldc.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace epmoe
