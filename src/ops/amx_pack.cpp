// The amx/bf16 kernel's packing (amx_tiles.hpp): weights once at load, into B tiles; activations each call,
// into A tiles. Both round FP32 to BF16 with to_bf16 (round to nearest even, NaN kept).
#include <algorithm>
#include <utility>

#include "amx_tiles.hpp"
#include "epmoe/ops/bf16.hpp"

namespace epmoe::amx {
namespace {

// One B tile: column c < 16 is the W row src[c] (k values; null: a padding column of zeros), over K values
// [32 s, 32 s + 32) pair-interleaved: tile[r][c][q] = W[c][32 s + 2 r + q], zero past k.
void pack_b_tile(const float* const src[16], int k, int s, uint16_t* tile) {
    for (int r = 0; r < 16; ++r)
        for (int c = 0; c < 16; ++c)
            for (int q = 0; q < 2; ++q) {
                const int kk = s * kTileK + 2 * r + q;
                tile[(r * 16 + c) * 2 + q] = src[c] != nullptr && kk < k ? to_bf16(src[c][kk]) : 0;
            }
}

// W1|W3 panels: panel p, tile 0 = W1 rows 16p + c, tile 1 = W3 rows 16p + c (w13 rows d_ff + 16p + c).
void pack_w13(const float* w13, const PackedMlp& p, uint16_t* out) {
    for (int panel = 0; panel < 2 * p.kb2; ++panel)
        for (int s = 0; s < p.kb13; ++s)
            for (int t = 0; t < 2; ++t) {
                const float* src[16];
                for (int c = 0; c < 16; ++c) {
                    const int row = 16 * panel + c;
                    src[c] = row < p.d_ff ? w13 + (static_cast<int64_t>(t) * p.d_ff + row) * p.d_model : nullptr;
                }
                pack_b_tile(src, p.d_model, s, out + ((int64_t{panel} * p.kb13 + s) * 2 + t) * kTileElems);
            }
}

// W2 panels: panel p, tile t = W2 rows (output features) 32p + 16t + c.
void pack_w2(const float* w2, const PackedMlp& p, uint16_t* out) {
    for (int panel = 0; panel < p.panels2; ++panel)
        for (int s = 0; s < p.kb2; ++s)
            for (int t = 0; t < 2; ++t) {
                const float* src[16];
                for (int c = 0; c < 16; ++c) {
                    const int row = kBlock * panel + 16 * t + c;
                    src[c] = row < p.d_model ? w2 + static_cast<int64_t>(row) * p.d_ff : nullptr;
                }
                pack_b_tile(src, p.d_ff, s, out + ((int64_t{panel} * p.kb2 + s) * 2 + t) * kTileElems);
            }
}

}  // namespace

namespace {

PackedMlp packed_shape(int d_model, int d_ff) {
    PackedMlp p;
    p.d_model = d_model, p.d_ff = d_ff;
    p.kb13 = static_cast<int>(round_up(d_model, kTileK) / kTileK);
    p.kb2 = static_cast<int>(round_up(d_ff, kTileK) / kTileK);
    p.panels2 = static_cast<int>(round_up(d_model, kBlock) / kBlock);
    return p;
}

}  // namespace

PackedMlp packed_view(const uint16_t* w13, const uint16_t* w2, int d_model, int d_ff,
                      std::shared_ptr<const void> owner) {
    PackedMlp p = packed_shape(d_model, d_ff);
    p.w13 = AlignedArray<uint16_t>(const_cast<uint16_t*>(w13), FreeDeleter{false});
    p.w2 = AlignedArray<uint16_t>(const_cast<uint16_t*>(w2), FreeDeleter{false});
    p.owner = std::move(owner);
    return p;
}

PackedMlp pack_mlp(const float* w13, const float* w2, int d_model, int d_ff) {
    PackedMlp p = packed_shape(d_model, d_ff);
    p.w13 = aligned_array<uint16_t>(2ull * p.kb2 * p.kb13 * kStepElems);
    p.w2 = aligned_array<uint16_t>(1ull * p.panels2 * p.kb2 * kStepElems);
    pack_w13(w13, p, p.w13.get());
    pack_w2(w2, p, p.w2.get());
    return p;
}

// Vectorised per 32-value tile row (the avx512f clone converts 16 values an instruction).
__attribute__((target_clones("avx512f", "avx2", "default"))) void pack_rows(const float* x, int64_t num_tokens, int k,
                                                                            int kb, uint16_t* a) {
    const int64_t row_blocks = round_up(num_tokens, kBlock) / kBlock;
    for (int64_t t = 0; t < row_blocks * kBlock; ++t) {
        // Row t: block t / 32, tile (t % 32) / 16, tile row t % 16; one tile row a step.
        uint16_t* dst = a + (t / kBlock) * kb * kStepElems + (t % kBlock) * kTileK;
        const float* src = x + t * k;
        for (int s = 0; s < kb; ++s, dst += kStepElems) {
            const int n = t < num_tokens ? std::min(kTileK, k - s * kTileK) : 0;
            for (int j = 0; j < n; ++j) dst[j] = to_bf16(src[s * kTileK + j]);
            for (int j = n; j < kTileK; ++j) dst[j] = 0;
        }
    }
}

}  // namespace epmoe::amx
