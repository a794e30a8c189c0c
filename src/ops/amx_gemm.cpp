// The amx/bf16 kernel's two GEMM passes over tiles (amx_tiles.hpp): W1|W3 with the SwiGLU in its epilogue,
// writing W2's BF16 input, then W2 into y.
//
// Loop order of a pass: row chunk (chunk_blocks row blocks) -> panel (32 output columns) -> k-chunk
// (k_steps steps of 32) -> row block, so a panel's k-chunk (2 KiB a step) is reused from L1 by every row
// block of the chunk and the row chunk's A is reused from L2 by every panel. Between k-chunks a block's FP32
// sums wait in cbuf (exact: the K order of every sum is 0, 1, ..., kb - 1 whatever the blocking, so a row's
// result depends neither on how many rows there are nor on where it sits among them).
//
// Measured on this CPU (Xeon, AMX, L1d 48 KiB, L2 2 MiB; one core, taskset -c 1, median of 5; GFLOP/s of
// the plain GEMM C = A · B^T, random BF16 data, peak of a tile loop without loads 3,100-3,200):
// - micro-kernel, 2x2 tiles (4 loads : 4 TDPBF16PS) with both operands in L1: 2,500; one operand from L2,
//   the other in L1: 2,450; both from L2: 1,880; both from L3 or memory: 380-450. Zero data runs faster
//   (3,130 with loads), so every figure here uses random BF16 values.
// - storing the 4 accumulators after a block costs a pipeline drain: 23 ns a block with the operands in L1,
//   300-340 ns with them in L2 (32 steps: 1,880 -> 1,440); reloading them costs little more (+5 %).
// - unaligned packed buffers (malloc's 16-byte offset): every tile row straddles two lines, 650 -> 1,100+.
// - W1|W3 shape (K 1024, N 7168, M 1024), writing FP32 C [M, N] from the tiles: 860-1,020 whatever the
//   blocking (the row stride of 28 KiB maps a tile store onto one L1 set, and C is 29 MB): hence the fused
//   SwiGLU epilogue through a 4 KiB buffer. Without that store, k_steps x chunk rows:
//   full K (32 steps): 1,200 at 512 rows, 1,140 at 256; 16 steps: 1,290 / 1,200; 8 steps: 1,410 / 1,330;
//   4 steps: 950 / 900. k_steps 8 is the largest k-chunk (16 KiB) that stays in L1 beside the A stream.
// - W2 shape (K 3584, N 1024, M 1024): the row chunk's A is 7 KiB a row, so 128 rows fill ~1 MiB of L2;
//   256 rows overflow it (-15 %); 8 steps 1,120, full K 1,155 (+ y written), 4 steps 1,110.
// The whole-MLP figures are in the header of mlp_amx.cpp.
#include <algorithm>
#include <cstring>

#include "amx_tiles.hpp"
#include "epmoe/ops/bf16.hpp"

namespace epmoe::amx {
namespace {

// Bytes of A a row chunk may hold (kept in L2 while every panel passes over it), and the k-chunk.
constexpr int64_t kChunkBytes = 1 << 20;
constexpr int kKSteps = 8;
constexpr int kLine = 64;  // bytes of a cache line

// Advances one 32x32 block by `steps` steps from acc (32 FP32 a row; zeros when first) and stores the sums
// to dst (ld FP32 values between rows). a, b: the block's and the panel's first step. after_step(s) runs
// after the tile instructions of step s are issued (prefetches).
template <class AfterStep>
inline void block_steps(const uint16_t* a, const uint16_t* b, int steps, bool first, const float* acc, float* dst,
                        int64_t ld, AfterStep&& after_step) {
    if (first) {
        tile_zero<0>(), tile_zero<1>(), tile_zero<2>(), tile_zero<3>();
    } else {
        tile_load<0>(acc, 128), tile_load<1>(acc + 16, 128), tile_load<2>(acc + 512, 128);
        tile_load<3>(acc + 528, 128);
    }
    for (int s = 0; s < steps; ++s, a += kStepElems, b += kStepElems) {
        tile_load<4>(a, 64), tile_load<6>(b, 64), tile_load<5>(a + kTileElems, 64), tile_load<7>(b + kTileElems, 64);
        tile_dp<0, 4, 6>(), tile_dp<1, 4, 7>(), tile_dp<2, 5, 6>(), tile_dp<3, 5, 7>();
        after_step(s);
    }
    const int64_t stride = ld * static_cast<int64_t>(sizeof(float));
    tile_store<0>(dst, stride), tile_store<1>(dst + 16, stride), tile_store<2>(dst + 16 * ld, stride);
    tile_store<3>(dst + 16 * ld + 16, stride);
}

// Prefetches (into L2) the part of the next k-chunk of B that step s of block j is due for: the k-chunks of
// a panel, and the panels, lie one after the other, so the next k-chunk starts where this one ends. Reading
// it from L3 when its first block needs it was the largest stall (W1|W3: 1,040 -> 1,220 GFLOP/s).
inline void prefetch_next_b(const uint16_t* chunk_end, int steps, int nb, int j, int s) {
    const int lines = steps * kStepElems * 2 / kLine, per = (lines + nb * steps - 1) / (nb * steps);
    const char* next = reinterpret_cast<const char*>(chunk_end);
    for (int q = (j * steps + s) * per, end = std::min(lines, q + per); q < end; ++q)
        asm volatile("prefetcht1 %0" ::"m"(next[q * kLine]));  // GCC 12 dropped __builtin_prefetch here
}

// One pass: for each row chunk, panel, k-chunk, row block. finish.target(block, panel, ld) says where a
// block's final sums go (null: cbuf, 32 FP32 a row); finish.done(block, panel, sums) runs once the panel's
// blocks are all done.
template <class Finish>
void gemm_pass(const uint16_t* a, const uint16_t* b, int kb, int64_t row_blocks, int panels, const Blocking& bl,
               float* cbuf, Finish& finish) {
    const int64_t operand = int64_t{kb} * kStepElems;  // BF16 values of a row block's A, or of a panel
    for (int64_t m0 = 0; m0 < row_blocks; m0 += bl.chunk_blocks) {
        const int nb = static_cast<int>(std::min<int64_t>(bl.chunk_blocks, row_blocks - m0));
        for (int p = 0; p < panels; ++p) {
            float* sums = cbuf + (p % 2) * bl.chunk_blocks * kBlock * kBlock;  // [chunk_blocks][32][32]
            for (int k0 = 0; k0 < kb; k0 += bl.k_steps) {
                const int steps = std::min(bl.k_steps, kb - k0);
                const bool last = k0 + steps == kb, more = p + 1 < panels || !last;  // more: a next k-chunk
                const uint16_t* bp = b + p * operand + int64_t{k0} * kStepElems;
                for (int j = 0; j < nb; ++j) {
                    float* c = sums + j * kBlock * kBlock;
                    int64_t ld = kBlock;
                    float* dst = last ? finish.target(m0 + j, p, ld) : nullptr;
                    if (dst == nullptr) dst = c, ld = kBlock;
                    block_steps(a + (m0 + j) * operand + int64_t{k0} * kStepElems, bp, steps, k0 == 0, c, dst, ld,
                                [&](int s) {
                                    if (more) prefetch_next_b(bp + steps * kStepElems, steps, nb, j, s);
                                });
                }
                // After the panel's last block: vector loads right behind the tile stores of the same sums,
                // block by block, ran W1|W3 at 1,050 GFLOP/s instead of 1,200.
                if (last && p > 0) {  // the previous panel's epilogue: its sums are in the other half
                    float* prev = cbuf + ((p - 1) % 2) * bl.chunk_blocks * kBlock * kBlock;
                    for (int j = 0; j < nb; ++j) finish.done(m0 + j, p - 1, prev + j * kBlock * kBlock);
                }
            }
        }
        float* prev = cbuf + ((panels - 1) % 2) * bl.chunk_blocks * kBlock * kBlock;
        for (int j = 0; j < nb; ++j) finish.done(m0 + j, panels - 1, prev + j * kBlock * kBlock);
    }
}

// W1|W3 epilogue: a block's sums are [32 rows][16 gate | 16 up]; its 16 BF16 results a row go to W2's A
// tiles at step p / 2, columns 16 (p % 2) .. +15 (tile rows 64 bytes apart, tiles 1 KiB: 32 values a row).
// ~0.22 us a block, ~15 % of its GEMM. Run in 8-row slices between the next panel's steps instead (the
// sums double-buffered), it overlapped nothing: same GFLOP/s, measured.
struct SwigluToAct {
    uint16_t* act;
    int kb2;
    float* target(int64_t, int, int64_t&) { return nullptr; }
    void done(int64_t block, int p, const float* sums) {
        uint16_t* out = act + (block * kb2 + p / 2) * kStepElems + (p % 2) * 16;
        for (int r = 0; r < kBlock; r += kSiluBlockRows)
            silu_mul_bf16_block(sums + r * kBlock, out + r * kTileK, kTileK);
    }
};

// W2 epilogue: full blocks go straight into y (measured: 2-7 % faster than through cbuf and a copy); the
// others were stored in cbuf and are copied.
struct ToY {
    float* y;
    int64_t num_tokens;
    int d_model;
    bool full(int64_t block, int p) const { return (block + 1) * kBlock <= num_tokens && (p + 1) * kBlock <= d_model; }
    float* target(int64_t block, int p, int64_t& ld) {
        if (!full(block, p)) return nullptr;
        ld = d_model;
        return y + block * kBlock * d_model + p * kBlock;
    }
    void done(int64_t block, int p, const float* sums) {
        if (full(block, p)) return;
        const int64_t rows = std::min<int64_t>(kBlock, num_tokens - block * kBlock);
        const int cols = std::min(kBlock, d_model - p * kBlock);
        for (int64_t r = 0; r < rows; ++r)
            std::memcpy(y + (block * kBlock + r) * d_model + p * kBlock, sums + r * kBlock, cols * sizeof(float));
    }
};

}  // namespace

Blocking blocking_for(int kb, int64_t row_blocks) {
    const int64_t fit = kChunkBytes / (int64_t{kb} * kStepElems * static_cast<int64_t>(sizeof(uint16_t)));
    return {static_cast<int>(std::clamp<int64_t>(fit, 1, std::max<int64_t>(row_blocks, 1))), kKSteps};
}

void w13_swiglu(const PackedMlp& w, const uint16_t* a, int64_t row_blocks, const Blocking& b, float* cbuf,
                uint16_t* act) {
    SwigluToAct finish{act, w.kb2};
    gemm_pass(a, w.w13.get(), w.kb13, row_blocks, 2 * w.kb2, b, cbuf, finish);
}

void w2_out(const PackedMlp& w, const uint16_t* act, int64_t num_tokens, const Blocking& b, float* cbuf, float* y) {
    ToY finish{y, num_tokens, w.d_model};
    gemm_pass(act, w.w2.get(), w.kb2, round_up(num_tokens, kBlock) / kBlock, w.panels2, b, cbuf, finish);
}

}  // namespace epmoe::amx
