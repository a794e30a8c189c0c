// PackedLinear (packed_linear.hpp), on BrgemmMatmuls.
#include "epmoe/ops/packed_linear.hpp"

#include "brgemm_matmuls.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/ops/attention.hpp"

namespace epmoe {
namespace {

// The FP32 matmuls, or null where oneDNN's fixed-shape FP32 matmul is not its brgemm.
const BrgemmMatmuls* fp32_matmuls() {
    static const bool brgemm = !BrgemmMatmuls::brgemm_implementation(BrgemmMatmuls::Dt::f32).empty();
    static const BrgemmMatmuls matmuls(BrgemmMatmuls::Dt::f32);
    return brgemm ? &matmuls : nullptr;
}

}  // namespace

PackedLinear::PackedLinear(std::span<const float> w, int out, int in) : out_(out), in_(in) {
    EPMOE_ASSERT(out > 0 && in > 0 && w.size() == static_cast<size_t>(out) * static_cast<size_t>(in));
    if (const BrgemmMatmuls* m = fp32_matmuls())
        packed_ = m->pack(w.data(), in, out);
    else
        w_ = w;
}

void PackedLinear::run(std::span<const float> x, int64_t n, std::span<float> y) const {
    EPMOE_ASSERT(x.size() == static_cast<size_t>(n) * in_ && y.size() == static_cast<size_t>(n) * out_);
    if (n == 0) return;
    if (packed())
        fp32_matmuls()->run(n, in_, out_, in_, x.data(), packed_.data(), y.data());
    else
        linear(x, n, in_, w_, {}, out_, y);
}

}  // namespace epmoe
