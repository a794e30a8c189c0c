// Routing fidelity: what a policy's biases (or ttt's router correction) cost. For every MoE layer whose biases
// are not all zero, or whose logits the correction changed, it recomputes the unbiased top-k from the checkpoint's
// logits and counts changed assignments (exact, every token), and on a deterministic sample of tokens (global
// index % sample_every == 0) it runs a second dispatch with the unbiased routing and compares the layer outputs. The
// extra work is timed apart (`seconds`) and is not part of step time or of the time breakdown.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "epmoe/base/shape.hpp"
#include "epmoe/comm/mpi.hpp"
#include "epmoe/moe/dispatch.hpp"
#include "epmoe/moe/placement.hpp"
#include "epmoe/moe/router.hpp"

namespace epmoe {

// Sums over tokens and layers on one rank; the coordinator sums them over ranks.
struct FidelityCounts {
    double changed_slots = 0;   // assignments whose expert is not in the token's unbiased top-k set, or dropped
    double slots = 0;           // assignments compared (num_tokens * top_k per MoE layer, biased or not)
    double changed_tokens = 0;  // (token, layer) pairs whose top-k set differs from the unbiased one
    double tokens = 0;          // (token, layer) pairs compared
    double diff_sq = 0;         // sampled tokens: sum ||y_biased - y_unbiased||^2 of the layer output
    double ref_sq = 0;          // sampled tokens: sum ||y_unbiased||^2
    double seconds = 0;         // wall time of the fidelity work on this rank, s
};

// Adds one layer's changed assignments of the routing run against the unbiased dropless one (same tokens, same
// top_k): an assignment changed when its expert is not in the token's unbiased top-k set, or when capacity
// dropped it (kept[t, i] == 0: it contributes nothing). kept: [num_tokens, top_k], or empty (nothing dropped).
// Pure.
void count_changed(const Routing& biased, const Routing& unbiased, std::span<const uint8_t> kept,
                   FidelityCounts& counts);

class Fidelity {
public:
    // sample_every: output distance on global tokens t with t % sample_every == 0; 0 = changed counts only.
    explicit Fidelity(int sample_every) : sample_every_(sample_every) {}
    void set_sample_every(int sample_every) { sample_every_ = sample_every; }

    // One layer, after its forward with bias and capacity, against the unbiased dropless routing of the
    // checkpoint's logits. Collective over comm when bias is non-zero, the routing adapted, or capacity on (all the
    // same on every rank; drops differ between ranks).
    // x_norm: [num_tokens, d_model] the layer's input; logits: [num_tokens, num_experts] the checkpoint router's;
    // bias: [num_experts]
    // (empty = none); adapted: the routing came from corrected logits (--policy ttt), not from `logits`; kept:
    // [num_tokens, top_k] what capacity kept; biased_out: [num_tokens, d_model] the layer's routed output.
    void measure(const mpi::Comm& comm, const ExpertMap& experts, const MlpKernel& kernel, const ModelShape& shape,
                 const Placement& placement, std::span<const float> x_norm, std::span<const float> logits,
                 std::span<const float> bias, bool adapted, bool capacity, const Routing& biased,
                 std::span<const uint8_t> kept, std::span<const float> biased_out, int64_t first_token,
                 FidelityCounts& counts);

private:
    int sample_every_;
    DispatchBuffers buf_;
    std::vector<float> x_, out_;  // [sampled, d_model] each
};

}  // namespace epmoe
