// Expert-parallel execution of one MoE layer: the dispatch plan (plan.hpp) executed: the token exchange
// (MPI_Alltoallv, or MPI_Alltoallw of a derived datatype where ranks block), the experts this rank owns, the
// return trip, and the weighted combine in the original token order.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "epmoe/base/shape.hpp"
#include "epmoe/comm/mpi.hpp"
#include "epmoe/moe/placement.hpp"
#include "epmoe/moe/plan.hpp"
#include "epmoe/moe/router.hpp"
#include "epmoe/ops/mlp_kernel.hpp"
#include "epmoe/sim/sim.hpp"

namespace epmoe {

// The experts of one layer this rank owns, by global expert id.
using ExpertMap = std::map<int, ExpertWeights>;

// Seconds spent in each phase of a layer on this rank.
struct LayerTimes {
    double gate = 0;      // RMSNorm, gate GEMM, top-k
    double dispatch = 0;  // capacity scan, row layout, count exchange, token alltoall
    double expert = 0;    // gather per expert, SwiGLU GEMMs, scatter
    double combine = 0;   // return alltoallv, weighted sum
    // Parts of the above, not in the breakdown (bench_dispatch attributes its time with them): laying out
    // the rows (assign_rows, and pack_rows where the rank packs) and the weighted sum: this rank's own work
    // on the rows, not MPI's nor waiting.
    double layout = 0, weighted_sum = 0;
};

// What one layer did on this rank.
struct LayerResult {
    std::vector<int64_t> expert_load;  // [num_experts] assignments of this rank's tokens kept, by expert
    int64_t assigned = 0;              // assignments of this rank's tokens (num_tokens * top_k)
    int64_t dropped = 0;               // of those, dropped by capacity
    int64_t rows_processed = 0;        // token rows routed to this rank's experts (its load)
    int64_t rows_run = 0;              // token rows this rank ran through experts (work sharing: any of its host's)
    double bytes_moved = 0;            // bytes through both alltoallv (sent + received) and expert weights read
    // Token-row bytes this rank sent through MPI on both trips, to ranks of its own host and of other hosts
    // (two_level: each hop; the shared-memory exchange sends its host's rows through no MPI call).
    double sent_bytes_on_host = 0, sent_bytes_off_host = 0;
    std::vector<uint8_t> kept;  // [num_tokens, top_k] 1 = kept, 0 = dropped
};

// Buffers reused across layers and steps, so steady-state steps do not allocate.
// The token buffers are sim::TokenBuffer: shared among simulated ranks in the SMPI build (sim.hpp).
// One expert's rows gathered ([rows, d_model] in and out) and its kernel's scratch.
struct ExpertScratch {
    sim::TokenBuffer in, out;
    std::vector<float> scratch;
};

struct DispatchBuffers {
    // [rows, d_model] each. send: this rank's rows for other ranks where it packs them, then their results
    // back; recv: the rows other ranks sent this rank's experts, then (in place) their results; own: this
    // rank's experts' results for its own rows. send_token[r] (own_token[r]) is the token whose input row
    // send (own) row r stands for: where ranks block, MPI gathers the sent rows from the layer's input
    // (else pack_rows copies them into send first), and the experts always gather the own ones from it.
    // Own rows never go through MPI.
    sim::TokenBuffer send, recv, own;
    std::vector<int64_t> send_token, own_token;
    ExpertScratch expert;             // the experts' buffers where they run in turn
    std::vector<ExpertScratch> task;  // a thread's, where they run as tasks (resources.expert_threads)
    std::vector<float> mlp_out;       // [num_tokens, d_model] a shared expert's output (private)
    // [num_tokens, top_k] where each kept slot's result is: r >= 0 row r of send; r <= -2 row -2 - r of own;
    // -1 dropped.
    std::vector<int64_t> slot_row;
    // The shared-memory exchange's window (DispatchOptions::shared_exchange), over the comm of the first layer
    // that used it; send lives in this rank's segment instead of in send above.
    std::unique_ptr<mpi::SharedWindow> window;
    // The two-level exchange's communicators and staging rows (DispatchOptions::two_level), over the comm of the
    // first layer that used it.
    std::unique_ptr<mpi::TwoLevelExchange> two_level;
    // [comm size] the lowest rank of each rank's host, in the comm of the first layer (LayerResult::sent_bytes_*).
    std::vector<int> host_of;
};

// Runs the expert part of one layer, the experts through kernel. Collective over comm.
// x_norm: [num_tokens, d_model], the normalised input of this rank's tokens, whose routing is given;
// first_token: global index of row 0; step_tokens: tokens of the step over all ranks (for capacity);
// out: [num_tokens, d_model], receives sum_i weight_i * expert_i(x).
LayerResult moe_layer_forward(const mpi::Comm& comm, const ExpertMap& experts, const MlpKernel& kernel,
                              const ModelShape& shape, const Placement& placement, std::span<const float> x_norm,
                              const Routing& routing, int64_t first_token, int64_t step_tokens,
                              const DispatchOptions& options, std::span<float> out, LayerTimes& times,
                              DispatchBuffers& buf);

// Sizes a token buffer whose old contents are not needed: a buffer that must grow is freed first, then
// allocated at exactly n, so a step never holds the old and the new buffer at once, copies nothing, and keeps
// no doubling slack (in the SMPI build every simulated rank's buffers count).
void resize_discarding(sim::TokenBuffer& b, size_t n);

// Copies the input row of each send row from x ([num_tokens, d]) into buf.send, as laid out by assign_rows,
// in token order (a token's rows while its input row is in L1): for ranks that pack their rows rather than
// let MPI gather them (moe_layer_forward says which). No MPI.
void pack_rows(std::span<const float> x, int d, int top_k, DispatchBuffers& buf);

// out[t] = sum_i weight[t, i] * result of slot (t, i) over kept slots, in the original token order.
// back: [rows, d] expert outputs as returned; own: [rows, d] this rank's experts' outputs for its own rows;
// slot_row: [num_tokens, top_k] as DispatchBuffers::slot_row; out: [num_tokens, d].
// Counts result.dropped and result.expert_load (sized [num_experts] by the caller). No MPI.
void combine_tokens(const Routing& routing, std::span<const float> back, std::span<const float> own,
                    std::span<const int64_t> slot_row, int d, std::span<float> out, LayerResult& result);

}  // namespace epmoe
