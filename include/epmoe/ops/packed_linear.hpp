// y = x W^T for a weight that does not change while it runs (eval's and generate's LM head): W [out, in] (a
// PyTorch Linear's weight, FP32) packed once for oneDNN's brgemm, where that is FP32's fixed-shape matmul on this
// CPU (avx512_core and up). The runtime-shape sgemm of linear() packs W inside every call: for the LM head
// [32000, 1024] at 16 rows 45 ms against 18 packed (AMD EPYC Zen 4, one thread). A row's result does not depend
// on the rows run with it. Elsewhere linear() on W as given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace epmoe {

class PackedLinear {
public:
    PackedLinear() = default;
    // Packs w [out, in] where the CPU allows; otherwise keeps a view of w, which must then outlive this.
    PackedLinear(std::span<const float> w, int out, int in);

    // y [n, out] = x [n, in] W^T.
    void run(std::span<const float> x, int64_t n, std::span<float> y) const;

    bool packed() const { return !packed_.empty(); }
    size_t packed_bytes() const { return packed_.size(); }

private:
    std::vector<std::byte> packed_;  // W^T in the brgemm's blocked layout; empty where not packed
    std::span<const float> w_;       // W as given, where not packed
    int out_ = 0, in_ = 0;
};

}  // namespace epmoe
