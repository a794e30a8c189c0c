// What the two exchanges of moe_layer_forward share (not a public header): where a chunk's rows of this rank's
// experts are, running those experts, and the phase seconds. dispatch.cpp runs the MPI exchange,
// dispatch_shared.cpp the shared-memory one.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "epmoe/moe/dispatch.hpp"

namespace epmoe {

// Where one source rank's rows are: row r's input is in[token[r] * d] (token null: in[r * d]), and its result
// goes to out[r * d]; r counts from the block starts of ChunkRowsOfExperts.
struct SourceRows {
    const float* in = nullptr;
    const int64_t* token = nullptr;
    float* out = nullptr;
};

// One chunk's rows of one rank's experts. local: that rank's experts, ascending; recv_counts: [P, local] rows
// of each expert from each source rank; source: [P] where each source's rows are; start: [P * local] the first
// row of each (source, expert) block, counted in its source's rows. An expert's rows, sources ascending, are
// its rows 0 .. rows_of(j) - 1.
struct ChunkRowsOfExperts {
    std::span<const int> local;
    std::span<const int> recv_counts;
    std::vector<SourceRows> source;
    std::vector<int64_t> start;

    size_t num_local() const { return local.size(); }
    size_t num_ranks() const { return source.size(); }
    int64_t rows_of(size_t j) const;
    // Rows [first, end) of expert j gathered into es.in, run, and scattered back from es.out.
    void run(const ExpertMap& experts, const MlpKernel& kernel, const ModelShape& shape, size_t j, int64_t first,
             int64_t end, ExpertScratch& es) const;
};

// One GEMM's worth of an expert's rows: local expert j, rows [first, end).
struct RowBlock {
    size_t j;
    int64_t first, end;
};

// The row blocks an expert's rows run in, the same cut on every path (MPI or shared-memory exchange, on the owner
// or on another rank of its host): a row's FP32 result depends on the GEMM's row count (openblas/fp32 and
// onednn/fp32, and onednn/bf16: a row alone or among 600 differs; only amx/bf16 is batch-invariant), so one cut
// keeps every path's bits. Each block is half the rows left, rounded up to 32, at most 1,024 and at least 128,
// and the last one of these is cut in two (its first half rounded up to 16); 192 rows or fewer run whole (2,048
// rows: 1,024, 512, 256, 128, 64, 64). largest_first: ordered by size, largest first (ties in expert and row
// order), so that the last blocks anyone starts are short; else in expert and row order.
std::vector<RowBlock> row_blocks(const ChunkRowsOfExperts& c, bool largest_first);

// Runs every local expert with rows over one chunk, in row blocks (row_blocks). threads > 1: a task per block
// (run_tasks), the largest first, each on one thread with its own buffers, and progress() once at the end; else
// in turn, progress() after each block (to let pending collectives move). Returns the blocks run.
int run_experts(const ExpertMap& experts, const MlpKernel& kernel, const ModelShape& shape, const ChunkRowsOfExperts& c,
                int threads, DispatchBuffers& buf, const std::function<void()>& progress);

// Phase seconds of the exchange, and the row blocks this rank ran (each reads its expert's weights once) and
// their rows. dispatch_wait: starting the token exchange and waiting for its rows; expert: the experts' compute
// (the shared-memory exchange: and the wait for the host's other ranks to finish theirs); return_start:
// starting the return trips (the shared-memory exchange: the return trip whole). back: where the results of
// send's rows came back to; own: the results of the own rows.
struct PipelineTimes {
    double dispatch_wait = 0, expert = 0, return_start = 0;
    int blocks_run = 0;
    int64_t rows_run = 0;
    std::span<const float> back, own;
};

// The shared-memory exchange (resources.exchange = shm) of a one-chunk plan built with buf.window: this rank's
// input and send rows published in its segment, the rows for other hosts through MPI, the experts reading
// this host's rows straight from their senders' segments and writing the results there. Collective over comm.
// share_work (resources.work_sharing = host): experts must hold every expert of the host, and the ranks of the
// host take row blocks of each other's experts once their own are claimed.
PipelineTimes shared_exchange_and_run(const mpi::Comm& comm, const DispatchPlan& plan, const ExpertMap& experts,
                                      const MlpKernel& kernel, const ModelShape& shape, std::span<const float> x_norm,
                                      int expert_threads, bool share_work, DispatchBuffers& buf);

}  // namespace epmoe
