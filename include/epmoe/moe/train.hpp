// Training through the expert-parallel MoE block: a forward that keeps what the backward needs, and the
// backward through the exchange. The combine's backward is a dispatch of the output gradients along the same
// plan (the forward's counts and rows), the dispatch's backward a combine: the same all-to-all with send and
// receive swapped (as Megatron's _AllToAll). Expert weight gradients stay on the rank that owns the expert; a
// dropped assignment gets no gradient. FP32 weights only (the BF16 kernels are inference-only).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "epmoe/comm/mpi.hpp"
#include "epmoe/moe/dispatch.hpp"
#include "epmoe/moe/placement.hpp"
#include "epmoe/moe/router.hpp"
#include "epmoe/ops/swiglu.hpp"

namespace epmoe {

// One local expert's part of the forward, for its backward: the rows it ran, in the order it ran them (by
// source rank, then token: global token order whatever the rank count).
struct ExpertSaved {
    std::vector<float> x;    // [rows, d_model] the expert's input rows
    std::vector<float> h13;  // [rows, 2 * d_ff] W1·x | W3·x (expert_forward_train)
};

// What moe_block_forward_train keeps for moe_block_backward (this rank's tokens of one layer and step). The
// backward re-exchanges only gradients: nothing is recomputed. Memory, per layer and rank, in floats:
// num_tokens * (num_experts + top_k * d_model) for the token side, plus rows * (d_model + 2 * d_ff) for the
// rows this rank's experts ran (rows ~ num_tokens * top_k when the load is even).
struct MoeBlockSaved {
    Routing routing;                   // the routing that ran (ids by score + bias, weights from the unbiased scores)
    std::vector<float> logits;         // [num_tokens, num_experts] the gate logits
    std::vector<uint8_t> kept;         // [num_tokens, top_k] 1 = kept by capacity (plan.kept, moved here)
    std::vector<float> slot_out;       // [num_tokens * top_k, d_model] each kept slot's expert output (0 if dropped)
    DispatchPlan plan;                 // the forward's plan: its counts and rows, replayed by the backward
    std::vector<ExpertSaved> experts;  // [plan.local.size()] this rank's experts, as plan.local
    std::vector<int64_t> expert_load;  // [num_experts] kept assignments of this rank's tokens, by expert
    int64_t dropped = 0;               // assignments of this rank's tokens dropped by capacity
};

// out = sum over kept slots of weight * expert(x_norm) for this rank's tokens, routed from the gate logits of
// x_norm (gate [num_experts, d_model], softmax or sigmoid per shape.gate, top_k by score + bias, renormalised
// when shape.norm_topk_prob). experts: the FP32 experts this rank owns. Same exchange and same results as the
// inference path (moe_layer_forward) but for two things: the exchange is always one blocking alltoallv each way
// (options.overlap_chunks is not used: training does not overlap chunks), and the rows are packed (never
// gathered by MPI_Alltoallw). x_norm, out: [num_tokens, d_model]; bias: [num_experts] or empty. times: gate =
// logits and top-k, dispatch = plan and token exchange, expert, combine = return trip and weighted sum.
// Collective over comm.
void moe_block_forward_train(const mpi::Comm& comm, const ExpertMap& experts, const ModelShape& shape,
                             const Placement& placement, std::span<const float> gate, std::span<const float> x_norm,
                             std::span<const float> bias, int64_t first_token, int64_t step_tokens,
                             const DispatchOptions& options, std::span<float> out, MoeBlockSaved& saved,
                             LayerTimes& times, DispatchBuffers& buf);

// The backward of moe_block_forward_train for dout [num_tokens, d_model]: ADDS into dx_norm [num_tokens,
// d_model] (through the experts; the gate's part comes from dlogits via gate_logits_backward, by the caller)
// and into dexperts (the owned experts' gradients, ExpertWeights layout, created zeroed on first use); WRITES
// dlogits [num_tokens, num_experts], the gradient of the combine weights through the router (route_weights_
// backward): the caller adds its auxiliary losses' gradients to it before the gate backward. Dropped slots
// get no gradient. first_token, step_tokens, options as the forward's; buf may have run other layers since.
// times: dispatch = the gradients' trip to the experts, expert = expert_backward, combine = the trip back and
// the sum per token, gate = route_weights_backward. Collective.
void moe_block_backward(const mpi::Comm& comm, const ExpertMap& experts, const ModelShape& shape,
                        const Placement& placement, std::span<const float> x_norm, const MoeBlockSaved& saved,
                        std::span<const float> dout, int64_t first_token, int64_t step_tokens,
                        const DispatchOptions& options, std::span<float> dx_norm,
                        std::map<int, ExpertWeights>& dexperts, std::span<float> dlogits, LayerTimes& times,
                        DispatchBuffers& buf);

}  // namespace epmoe
