// amx/bf16: the SwiGLU MLP on AMX tiles, BF16 inputs with FP32 accumulation (amx_tiles.hpp, amx_gemm.cpp).
// prepare() packs W1|W3 and W2 into BF16 tiles once and drops the FP32 copies. forward() rounds x to BF16
// into A tiles (rows padded to 32, K to 32 with zeros), runs W1|W3 with silu(gate) * up in the epilogue
// (W2's BF16 input written straight from 4 KiB of FP32 sums: no FP32 [M, 2 d_ff] anywhere), then W2 into y.
// Same semantics as onednn/bf16: x, the weights and W2's input rounded to BF16, sums in FP32; and, since
// no sum's K order depends on the row count or a row's position, a token's output is bit-identical
// however it is batched.
//
// Whole-MLP GFLOP/s (6 M d_model d_ff FLOPs) on this CPU: see the table below (bench_kernels, Kernel/amx/bf16).
#include <algorithm>
#include <cstdint>

#include "amx_tiles.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/ops/bf16.hpp"
#include "epmoe/ops/mlp_kernel.hpp"

namespace epmoe {
namespace {

// FP32 scratch values for `bytes` bytes plus room to align the start to 64 bytes.
size_t scratch_floats(int64_t bytes) { return static_cast<size_t>(amx::round_up(bytes, 64) / 4 + 16); }

class AmxBf16Kernel final : public MlpKernel {
public:
    std::string name() const override { return "amx/bf16"; }
    std::string implementation() const override {
        return "amx: AMX-BF16 tiles (tdpbf16ps, 2x2 tiles a 32x32 block), SwiGLU fused into the W1|W3 epilogue";
    }

    void prepare(ExpertWeights& w, int d_model, int d_ff) const override {
        EPMOE_ASSERT(w.w13.size() == 2ull * d_ff * d_model && w.w2.size() == 1ull * d_model * d_ff);
        auto packed = std::make_shared<amx::PackedMlp>(amx::pack_mlp(w.w13.data(), w.w2.data(), d_model, d_ff));
        std::vector<float>().swap(w.w13);  // the FP32 copies go: the tiles are all this kernel reads
        std::vector<float>().swap(w.w2);
        w.prepared_bytes = packed->bytes();
        w.prepared = std::move(packed);
    }

    MlpArrays arrays(const ExpertWeights& w, int, int) const override {
        const auto* p = static_cast<const amx::PackedMlp*>(w.prepared.get());
        EPMOE_ASSERT(p != nullptr);
        return {{reinterpret_cast<const std::byte*>(p->w13.get()), p->w13_bytes()},
                {reinterpret_cast<const std::byte*>(p->w2.get()), p->w2_bytes()}};
    }
    ExpertWeights view(const std::byte* w13, const std::byte* w2, int d_model, int d_ff,
                       std::shared_ptr<const void> owner) const override {
        auto packed = std::make_shared<amx::PackedMlp>(amx::packed_view(reinterpret_cast<const uint16_t*>(w13),
                                                                        reinterpret_cast<const uint16_t*>(w2), d_model,
                                                                        d_ff, std::move(owner)));
        ExpertWeights w;
        w.prepared_bytes = packed->bytes();
        w.prepared = std::move(packed);
        return w;
    }

    void forward(const ExpertWeights& w, int d_model, int d_ff, std::span<const float> x, std::span<float> y,
                 std::vector<float>& scratch) const override {
        const auto* p = static_cast<const amx::PackedMlp*>(w.prepared.get());
        EPMOE_ASSERT(p != nullptr && p->d_model == d_model && p->d_ff == d_ff && y.size() == x.size());
        const int64_t num_tokens = static_cast<int64_t>(x.size() / d_model);
        if (num_tokens == 0) return;
        const int64_t row_blocks = amx::round_up(num_tokens, amx::kBlock) / amx::kBlock;
        const amx::Blocking b13 = amx::blocking_for(p->kb13, row_blocks), b2 = amx::blocking_for(p->kb2, row_blocks);
        // scratch: x in A tiles [row_blocks][kb13] steps, W2's input [row_blocks][kb2] steps (BF16), the
        // blocks' FP32 sums [chunk_blocks][32][32]; each 64-byte aligned.
        const int64_t a_bytes = row_blocks * p->kb13 * amx::kStepElems * 2,
                      act_bytes = row_blocks * p->kb2 * amx::kStepElems * 2;
        const int64_t c_bytes =
            2 * int64_t{std::max(b13.chunk_blocks, b2.chunk_blocks)} * amx::kBlock * amx::kBlock * 4;
        scratch.resize(scratch_floats(a_bytes + act_bytes + c_bytes));
        const uintptr_t base = amx::round_up(reinterpret_cast<uintptr_t>(scratch.data()), 64);
        auto* a = reinterpret_cast<uint16_t*>(base);                        // [row_blocks][kb13][2][16][32]
        auto* act = reinterpret_cast<uint16_t*>(base + a_bytes);            // [row_blocks][kb2][2][16][32]
        auto* cbuf = reinterpret_cast<float*>(base + a_bytes + act_bytes);  // [2][chunk_blocks][32][32]
        amx::pack_rows(x.data(), num_tokens, d_model, p->kb13, a);
        FlushSubnormals flush;
        amx::tile_configure();
        amx::w13_swiglu(*p, a, row_blocks, b13, cbuf, act);
        amx::w2_out(*p, act, num_tokens, b2, cbuf, y.data());
        amx::tile_release();
    }
};

}  // namespace

// The kernel of compute.backend = amx; fails naming the key where this CPU or process cannot run AMX.
std::shared_ptr<const MlpKernel> amx_kernel(const std::string& dtype) {
    if (dtype != "bf16")
        fail("config key compute.dtype = \"", dtype, "\": compute.backend amx runs bf16 only; use onednn or auto");
    const Bf16Support& s = bf16_support();
    if (!s.amx_permitted) fail("config key compute.backend = \"amx\": AMX cannot run here: ", s.amx_detail);
    return std::make_shared<AmxBf16Kernel>();
}

}  // namespace epmoe
