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

// One chunk's rows of this rank's experts. local: this rank's experts, ascending; recv_counts: [P, local] rows
// of each expert from each source rank; source: [P] where each source's rows are; start: [P * local] the first
// row of each (source, expert) block, counted in its source's rows.
struct ChunkRowsOfExperts {
    const std::vector<int>& local;
    std::span<const int> recv_counts;
    std::vector<SourceRows> source;
    std::vector<int64_t> start;

    size_t num_local() const { return local.size(); }
    size_t num_ranks() const { return source.size(); }
    int64_t rows_of(size_t j) const;
    // Expert j's n_e rows gathered into es.in (sources ascending), run, and scattered back from es.out.
    void run(const ExpertMap& experts, const MlpKernel& kernel, const ModelShape& shape, size_t j, int64_t n_e,
             ExpertScratch& es) const;
};

// Runs every local expert with rows over one chunk (an expert's rows are gathered before its results are
// scattered back). threads > 1: a task per expert (run_tasks), the largest first, each on one thread with its
// own buffers, and progress() once at the end; else in turn, progress() after each expert (to let pending
// collectives move). Returns the experts run.
int run_experts(const ExpertMap& experts, const MlpKernel& kernel, const ModelShape& shape, const ChunkRowsOfExperts& c,
                int threads, DispatchBuffers& buf, const std::function<void()>& progress);

// Phase seconds of the exchange, and the experts it ran (a chunk's run of an expert counts once).
// dispatch_wait: starting the token exchange and waiting for its rows; expert: the experts' compute;
// return_start: starting the return trips (the shared-memory exchange: the return trip whole). back: where
// the results of send's rows came back to.
struct PipelineTimes {
    double dispatch_wait = 0, expert = 0, return_start = 0;
    int experts_run = 0;
    std::span<const float> back;
};

// The shared-memory exchange (resources.exchange = shm) of a one-chunk plan built with buf.window: this rank's
// input and send rows published in its segment, the rows for other hosts through MPI, the experts reading
// this host's rows straight from their senders' segments and writing the results there. Collective over comm.
PipelineTimes shared_exchange_and_run(const mpi::Comm& comm, const DispatchPlan& plan, const ExpertMap& experts,
                                      const MlpKernel& kernel, const ModelShape& shape, std::span<const float> x_norm,
                                      int expert_threads, DispatchBuffers& buf);

}  // namespace epmoe
