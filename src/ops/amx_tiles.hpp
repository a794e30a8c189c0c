// AMX BF16 tiles for the amx/bf16 MLP kernel (private to src/ops): the tile instructions, the packed layouts
// of weights and activations, and the blocked GEMM passes (amx_gemm.cpp). Pure compute; no MPI.
//
// A tile is 16 rows of 64 bytes (32 BF16 values or 16 FP32). One step of the GEMM is a 32x32 output block
// advanced by 32 values of K: two A tiles (rows 0-15, 16-31), two B tiles (columns 0-15, 16-31), four
// TDPBF16PS into four FP32 accumulator tiles. Both operands are packed so that every tile is 1 KiB
// contiguous (rows 64 bytes apart) and 64-byte aligned: a row-major A at a stride of 2 K bytes maps the 16
// rows of a tile onto 1-2 L1 sets at K = 1024, and an unaligned tile row straddles two cache lines (both
// measured: half the GFLOP/s).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

namespace epmoe::amx {

constexpr int kTileK = 32;                  // BF16 values in a tile row: the K of one step
constexpr int kTileElems = 16 * kTileK;     // BF16 values in a tile (1 KiB)
constexpr int kBlock = 32;                  // rows (and columns) of an output block: 2 x 2 tiles
constexpr int kStepElems = 2 * kTileElems;  // BF16 values of one operand's two tiles in one step

inline int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// Tile instructions as inline assembly. GCC 12's intrinsics declare no memory operand for tileloadd and
// only the first 8 bytes for ldtilecfg, so the compiler may drop or reorder the stores they read.
template <int T>
inline void tile_load(const void* base, int64_t stride) {
    asm volatile("tileloadd (%0,%1,1), %%tmm%c2" ::"r"(base), "r"(stride), "n"(T) : "memory");
}
template <int T>
inline void tile_store(void* base, int64_t stride) {
    asm volatile("tilestored %%tmm%c2, (%0,%1,1)" ::"r"(base), "r"(stride), "n"(T) : "memory");
}
template <int T>
inline void tile_zero() {
    asm volatile("tilezero %%tmm%c0" ::"n"(T));
}
// C (tile Acc) += A (tile A) · B (tile B): 16 x 16 FP32 += 16 x 32 BF16 · 32 x 16 BF16 (B pair-interleaved).
template <int Acc, int A, int B>
inline void tile_dp() {
    asm volatile("tdpbf16ps %%tmm%c2, %%tmm%c1, %%tmm%c0" ::"n"(Acc), "n"(A), "n"(B));
}

// Palette 1, tiles 0-7 all 16 rows x 64 bytes. Loaded once per forward (a thread's tile state may have
// been changed by other code, e.g. oneDNN's AMX kernels) and released at its end.
struct alignas(64) TileConfig {
    uint8_t palette = 1, start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
    uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};
inline void tile_configure() {
    static const TileConfig config;
    asm volatile("ldtilecfg %0" ::"m"(config));
}
inline void tile_release() { asm volatile("tilerelease" ::); }

// 64-byte aligned arrays (tile rows must not straddle cache lines).
struct FreeDeleter {
    bool owned = true;  // false: the memory is someone else's (PackedMlp of a view)
    void operator()(void* p) const {
        if (owned) std::free(p);
    }
};
template <class T>
using AlignedArray = std::unique_ptr<T[], FreeDeleter>;
template <class T>
AlignedArray<T> aligned_array(size_t n) {
    void* p = std::aligned_alloc(64, static_cast<size_t>(round_up(static_cast<int64_t>(n * sizeof(T)), 64)));
    if (p == nullptr) throw std::bad_alloc();
    return AlignedArray<T>(static_cast<T*>(p));
}

// One MLP's weights in tile layout. A B operand of N output columns and K inputs is kb = ceil(K / 32) steps
// by N / 32 panels: [panel][kb][2 tiles][16 k pairs][16 columns][2], zeros where K or N is padding.
// W1|W3: panel p holds W1 rows 16p .. 16p+15 (tile 0) and W3 rows 16p .. 16p+15 (tile 1), so one block's
// accumulators hold gate and up values of the same 16 columns; d_ff is padded to 32 (an even panel count).
struct PackedMlp {
    int d_model = 0, d_ff = 0;
    int kb13 = 0;                       // steps of W1|W3: ceil(d_model / 32)
    int kb2 = 0;                        // steps of W2: ceil(d_ff / 32); W1|W3 has 2 kb2 panels
    int panels2 = 0;                    // panels of W2: ceil(d_model / 32)
    AlignedArray<uint16_t> w13;         // [2 kb2][kb13][2][16][32]
    AlignedArray<uint16_t> w2;          // [panels2][kb2][2][16][32]
    std::shared_ptr<const void> owner;  // what keeps a view's w13 and w2 alive (packed_view)
    uint64_t w13_bytes() const { return 2ull * kb2 * kb13 * kStepElems * sizeof(uint16_t); }
    uint64_t w2_bytes() const { return 1ull * panels2 * kb2 * kStepElems * sizeof(uint16_t); }
    uint64_t bytes() const { return w13_bytes() + w2_bytes(); }
};

// Packs FP32 w13 [2 d_ff, d_model] and w2 [d_model, d_ff] (row-major) into BF16 tiles (to_bf16).
PackedMlp pack_mlp(const float* w13, const float* w2, int d_model, int d_ff);
// The packed weights of a d_model x d_ff MLP that are already at w13 and w2 (laid out as pack_mlp lays them),
// kept alive by owner: no copy.
PackedMlp packed_view(const uint16_t* w13, const uint16_t* w2, int d_model, int d_ff,
                      std::shared_ptr<const void> owner);

// x [num_tokens, k] FP32 row-major -> a [ceil(num_tokens / 32)][kb][2][16][32] BF16 (to_bf16): the A
// operand, row r of block b in tile r / 16 at row r % 16; rows past num_tokens and K past k are zeros.
void pack_rows(const float* x, int64_t num_tokens, int k, int kb, uint16_t* a);

// Loop sizes of one GEMM pass: rows in chunks of chunk_blocks row blocks (the A chunk stays in L2 while
// every panel's weights pass over it), K in chunks of k_steps steps (one panel's k-chunk, 2 KiB a step,
// stays in L1 while it meets every row block of the chunk).
struct Blocking {
    int chunk_blocks = 1;
    int k_steps = 8;
};

// The blocking of a pass with kb steps of K over row_blocks row blocks (measured: amx_gemm.cpp).
Blocking blocking_for(int kb, int64_t row_blocks);

// act = bf16(silu(x · W1^T) ⊙ (x · W3^T)): a: packed x (pack_rows, kb13 steps), act: [row_blocks][kb2][2]
// [16][32] BF16, W2's A operand. cbuf: [chunk_blocks][32][32] FP32 (64-byte aligned). Call under
// FlushSubnormals (bf16.hpp).
void w13_swiglu(const PackedMlp& w, const uint16_t* a, int64_t row_blocks, const Blocking& b, float* cbuf,
                uint16_t* act);

// y[num_tokens, d_model] = act · W2^T. Full 32x32 blocks are stored into y from the tiles, the others
// (last rows, d_model not a multiple of 32) through cbuf ([chunk_blocks][32][32] FP32).
void w2_out(const PackedMlp& w, const uint16_t* act, int64_t num_tokens, const Blocking& b, float* cbuf, float* y);

}  // namespace epmoe::amx
