// The dispatch plan of one MoE layer and step on this rank: which assignments survive capacity, the row each
// kept slot gets, how many rows go to and come from each rank, and what each chunk's exchange moves. Built
// once (plan_dispatch), executed by the exchange (dispatch.hpp); a backward pass replays it with send and
// receive swapped.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "epmoe/comm/mpi.hpp"
#include "epmoe/comm/shared_window.hpp"
#include "epmoe/comm/two_level.hpp"
#include "epmoe/moe/placement.hpp"
#include "epmoe/moe/router.hpp"

namespace epmoe {

struct DispatchBuffers;

// How a layer dispatches. capacity_factor: 0 = dropless. overlap_chunks: the rank's tokens go in this many
// chunks, each chunk's MPI_Ialltoallv overlapping the previous chunk's experts (compute.overlap_chunks;
// 1 = no overlap: blocking dispatch, experts, blocking return).
struct DispatchOptions {
    double capacity_factor = 0;
    int overlap_chunks = 1;
    int expert_threads = 1;  // > 1: the experts run as tasks on this many threads (resources.expert_threads)
    // resources.exchange = shm: ranks of one host exchange rows through a shared-memory window (DispatchBuffers::
    // window), MPI only between hosts. One chunk only.
    bool shared_exchange = false;
    // resources.work_sharing = host (with shared_exchange): the ranks of a host take row blocks of each other's
    // experts once their own are taken; the experts map given to moe_layer_forward holds every expert of the host.
    bool share_work = false;
    // resources.inter_host = two_level: the MPI exchange in two levels (DispatchBuffers::two_level): inside each
    // host, then one message a rank to its counterpart on each other host. One chunk only.
    bool two_level = false;
};

// What each chunk's exchange moves: elements to and from each peer (none to or from self: own rows stay in
// own; none to or from this host's ranks in the shared-memory exchange: their rows stay in send for their owners
// to read), and the chunk's first row in send, in recv and in own ([chunks + 1] each; the last entry is the total).
struct ChunkRows {
    std::vector<std::vector<int>> send_elems, recv_elems;  // [chunks][num_ranks]
    std::vector<int64_t> send_row, recv_row, own_row;      // [chunks + 1]
    std::vector<std::vector<int64_t>> send_first;          // [chunks][num_ranks] each peer's first row in the chunk
};

// The plan. The row of each kept slot, and the token each row stands for, are in the DispatchBuffers the plan
// was built with (slot_row, send_token, own_token: assign_rows).
struct DispatchPlan {
    std::vector<uint8_t> kept;     // [num_tokens, top_k] 1 = kept, 0 = dropped by capacity
    std::vector<int> local;        // the experts this rank holds, ascending
    int chunks = 1;                // compute.overlap_chunks
    bool mpi_gathers = false;      // one blocking exchange: MPI gathers the sent rows from the input itself
    std::vector<int> send_counts;  // [chunks, num_slots] rows to each (chunk, slot) (Placement::slot)
    std::vector<int> recv_counts;  // [chunks, num_ranks, local.size()] rows of each local expert from each rank
    ChunkRows rows;
    double layout_s = 0;  // seconds assign_rows took (the rank's own work on rows: LayerTimes::layout)
};

// Where the exchange puts a chunk's received rows: the first row of each (source rank, local expert) block of
// recv_counts ([num_ranks, num_local]), counted in recv for the other ranks' rows and in own for rank self's.
std::vector<int64_t> expert_block_starts(std::span<const int> recv_counts, size_t num_local, int self);

// Builds the plan of one layer: capacity (an exclusive prefix sum over ranks), the row layout in buf
// (assign_rows) and the count exchange (one MPI_Alltoall). Collective over comm. routing: this rank's tokens,
// first_token: the global index of its row 0; step_tokens: tokens of the step over all ranks (for capacity);
// d: d_model.
DispatchPlan plan_dispatch(const mpi::Comm& comm, const Placement& placement, const Routing& routing, int num_experts,
                           int d, int64_t first_token, int64_t step_tokens, const DispatchOptions& options,
                           DispatchBuffers& buf);

// Lays out the kept slots of this rank's tokens: each gets a row of buf.send, ordered by (chunk, destination
// rank, expert, token), and buf.slot_row says which; the slots of rank `self` get rows of buf.own instead, in
// the same order (-1: every slot goes to send). buf.send_token and buf.own_token get each row's token; send
// and own are sized for the results (no row is copied). kept: [num_tokens, top_k]; first_token: global
// index of row 0 (for replicated placement); chunks: token t is in chunk t * chunks / num_tokens. Returns the
// row count of each (chunk, slot) block, [chunks, placement.num_slots()] (Placement::slot: by destination
// rank, then expert), own slots included. No MPI.
std::vector<int> assign_rows(const Placement& placement, const Routing& routing, std::span<const uint8_t> kept, int d,
                             int64_t first_token, DispatchBuffers& buf, int chunks = 1, int self = -1);

// Marks which assignments survive capacity: each expert accepts at most ceil(X * step_tokens * top_k / E)
// assignments, in global token order. counts_before[e] = assignments to e on lower ranks.
// expert_ids: [num_tokens, top_k]; kept: [num_tokens, top_k]. Pure; used by moe_layer_forward.
void apply_capacity(std::span<const int32_t> expert_ids, int num_experts, std::span<const int64_t> counts_before,
                    int64_t capacity, std::span<uint8_t> kept);

// ceil(capacity_factor * step_tokens * top_k / num_experts); 0 factor = no limit (INT64_MAX).
int64_t expert_capacity(double capacity_factor, int64_t step_tokens, int top_k, int num_experts);

}  // namespace epmoe
