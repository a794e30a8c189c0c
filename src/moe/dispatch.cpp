// The exchange and the experts of one layer: executes a dispatch plan (plan.hpp), runs the experts this rank
// owns, brings the results back and combines them with the gate weights in token order.
#include "epmoe/moe/dispatch.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>

#include "dispatch_internal.hpp"
#include "epmoe/comm/hosts.hpp"
#include "epmoe/ops/swiglu.hpp"

namespace epmoe {

void resize_discarding(sim::TokenBuffer& b, size_t n) {
    if (n > b.capacity()) {
        sim::TokenBuffer().swap(b);
        b.reserve(n);
    }
    b.resize(n);
}

void pack_rows(std::span<const float> x, int d, int top_k, DispatchBuffers& buf) {
    const int64_t slots = static_cast<int64_t>(buf.slot_row.size());
    for (int64_t a = 0; a < slots; ++a)
        if (buf.slot_row[a] >= 0) std::memcpy(&buf.send[buf.slot_row[a] * d], &x[a / top_k * d], sizeof(float) * d);
}

int64_t ChunkRowsOfExperts::rows_of(size_t j) const {
    int64_t n = 0;
    for (size_t s = 0; s < num_ranks(); ++s) n += recv_counts[s * num_local() + j];
    return n;
}

void ChunkRowsOfExperts::run(const ExpertMap& experts, const MlpKernel& kernel, const ModelShape& shape, size_t j,
                             int64_t first, int64_t end, ExpertScratch& es) const {
    const int d = shape.d_model;
    auto it = experts.find(local[j]);
    EPMOE_ASSERT(it != experts.end() && first < end);
    resize_discarding(es.in, (end - first) * d);
    resize_discarding(es.out, (end - first) * d);
    // Each source's part of [first, end): its rows [from, to) of the block, at row `at` of es.
    auto for_each_part = [&](auto&& part) {
        int64_t row = 0;  // expert j's rows before source s
        for (size_t s = 0; s < num_ranks() && row < end; ++s) {
            const size_t b = s * num_local() + j;
            const int64_t from = std::max(first, row), to = std::min(end, row + recv_counts[b]);
            if (from < to) part(source[s], start[b] + from - row, to - from, from - first);
            row += recv_counts[b];
        }
    };
    for_each_part([&](const SourceRows& src, int64_t r0, int64_t n, int64_t at) {
        if (!src.token) {
            std::memcpy(&es.in[at * d], src.in + r0 * d, sizeof(float) * n * d);
            return;
        }
        for (int64_t r = r0; r < r0 + n; ++r)
            std::memcpy(&es.in[at++ * d], src.in + src.token[r] * d, sizeof(float) * d);
    });
    expert_forward(kernel, it->second, d, shape.d_ff, es.in, es.out, es.scratch);
    for_each_part([&](const SourceRows& src, int64_t r0, int64_t n, int64_t at) {
        std::memcpy(src.out + r0 * d, &es.out[at * d], sizeof(float) * n * d);
    });
}

namespace {

int64_t next_block_rows(int64_t remaining) {
    if (remaining <= 192) return remaining;
    return std::min<int64_t>(1024, std::max<int64_t>(128, (remaining / 2 + 31) / 32 * 32));
}

}  // namespace

std::vector<RowBlock> row_blocks(const ChunkRowsOfExperts& c, bool largest_first) {
    std::vector<RowBlock> blocks;
    for (size_t j = 0; j < c.num_local(); ++j) {
        const int64_t n = c.rows_of(j);
        for (int64_t first = 0; first < n;) {
            const int64_t end = first + next_block_rows(n - first);
            blocks.push_back({j, first, end});
            first = end;
        }
        // An expert of several blocks ends in two halves of its last (128-192 rows): the blocks taken last on a
        // host are shorter, so the ranks' finishing times differ by less (on the 16-core machine, 16 FP32 ranks
        // waited 40-80 ms a step at the combine for the last one, whose 128-row block takes about 30 ms there).
        if (n > 192) {
            const RowBlock last = blocks.back();
            const int64_t half = last.first + ((last.end - last.first) / 2 + 15) / 16 * 16;
            blocks.back().end = half;
            blocks.push_back({j, half, last.end});
        }
    }
    if (largest_first)  // ties in block order: the same order every run
        std::stable_sort(blocks.begin(), blocks.end(),
                         [](const RowBlock& a, const RowBlock& b) { return a.end - a.first > b.end - b.first; });
    return blocks;
}

int run_experts(const ExpertMap& experts, const MlpKernel& kernel, const ModelShape& shape, const ChunkRowsOfExperts& c,
                int threads, DispatchBuffers& buf, const std::function<void()>& progress) {
    std::vector<RowBlock> blocks = row_blocks(c, /*largest_first=*/threads > 1);
    if (sim::simulated()) {  // modelled compute; gathering and scattering shared rows would only map pages
        for (const RowBlock& b : blocks) sim::execute_mlp(shape.d_model, shape.d_ff, b.end - b.first);
    } else if (threads <= 1) {
        for (const RowBlock& b : blocks) {
            c.run(experts, kernel, shape, b.j, b.first, b.end, buf.expert);
            progress();
        }
    } else {
        if (buf.task.size() < static_cast<size_t>(threads)) buf.task.resize(threads);
        run_tasks(threads, blocks.size(), [&](size_t i, int slot) {
            c.run(experts, kernel, shape, blocks[i].j, blocks[i].first, blocks[i].end, buf.task[slot]);
        });
        progress();
    }
    return static_cast<int>(blocks.size());
}

void combine_tokens(const Routing& routing, std::span<const float> back, std::span<const float> own,
                    std::span<const int64_t> slot_row, int d, std::span<float> out, LayerResult& result) {
    const int k = routing.top_k;
    const int64_t n = routing.num_tokens();
    std::fill(result.expert_load.begin(), result.expert_load.end(), 0);
    for (int64_t t = 0; t < n; ++t) {
        float* __restrict y = &out[t * d];
        bool written = false;  // the first kept slot stores, the others add: one pass over out, no zero fill
        for (int i = 0; i < k; ++i) {
            const int64_t row = slot_row[t * k + i];
            if (row == -1) {
                ++result.dropped;
                continue;
            }
            ++result.expert_load[routing.expert_ids[t * k + i]];
            const float w = routing.weights[t * k + i];
            const float* __restrict src = row >= 0 ? &back[row * d] : &own[(-2 - row) * d];
            if (written) {
                for (int j = 0; j < d; ++j) y[j] += w * src[j];
            } else {
                for (int j = 0; j < d; ++j) y[j] = w * src[j];
            }
            written = true;
        }
        if (!written) std::fill(y, y + d, 0.0f);  // every slot dropped
    }
}

namespace {

// Executes the plan: the token exchange, the experts, the return trip into buf.send. Chunk c + 1's tokens travel
// while chunk c's experts run, and chunk c's results travel back while chunk c + 1's run; with one chunk it is
// dispatch, experts, return, in turn. The results come back into send, in the layout the rows left in.
// One trip of a chunk's rows: an MPI_(I)alltoallv, or the two-level exchange, whole (one chunk).
std::unique_ptr<mpi::PendingAlltoallv> start_trip(const mpi::Comm& comm, mpi::TwoLevelExchange* two_level, float* from,
                                                  const std::vector<int>& from_elems, float* to,
                                                  const std::vector<int>& to_elems, bool overlap) {
    if (!two_level)
        return std::make_unique<mpi::PendingAlltoallv>(comm, from, from_elems, to, to_elems, MPI_FLOAT, overlap);
    two_level->alltoallv(from, from_elems, to, to_elems);
    return std::make_unique<mpi::PendingAlltoallv>();
}

PipelineTimes exchange_and_run(const mpi::Comm& comm, const DispatchPlan& plan, const ExpertMap& experts,
                               const MlpKernel& kernel, const ModelShape& shape, std::span<const float> x_norm,
                               int expert_threads, bool two_level_on, DispatchBuffers& buf) {
    const int chunks = plan.chunks, num_ranks = comm.size(), self = comm.rank(), d = shape.d_model;
    const int num_local = static_cast<int>(plan.local.size());
    const ChunkRows& rows = plan.rows;
    resize_discarding(buf.recv, static_cast<size_t>(rows.recv_row[chunks]) * d);
    auto send_part = [&](int c) { return buf.send.data() + rows.send_row[c] * d; };
    auto recv_part = [&](int c) { return buf.recv.data() + rows.recv_row[c] * d; };
    std::vector<std::unique_ptr<mpi::PendingAlltoallv>> out_trip(chunks), back_trip(chunks);
    const bool overlap = chunks > 1;
    mpi::TwoLevelExchange* two_level = two_level_on ? buf.two_level.get() : nullptr;
    auto start_out_trip = [&](int c) {
        return start_trip(comm, two_level, send_part(c), rows.send_elems[c], recv_part(c), rows.recv_elems[c], overlap);
    };
    PipelineTimes t;
    const double start = mpi::wtime();
    if (plan.mpi_gathers) {
        std::vector<int> rows_to(num_ranks), recv_rows(num_ranks);
        for (int r = 0; r < num_ranks; ++r) {
            rows_to[r] = rows.send_elems[0][r] / d;
            recv_rows[r] = rows.recv_elems[0][r] / d;
        }
        mpi::alltoall_rows(comm, x_norm.data(), buf.send_token, rows_to, recv_part(0), recv_rows, d, MPI_FLOAT);
        out_trip[0] = std::make_unique<mpi::PendingAlltoallv>();
    } else {
        out_trip[0] = start_out_trip(0);
    }
    t.dispatch_wait = mpi::wtime() - start;  // the first trip, whole where MPI gathers the rows
    for (int c = 0; c < chunks; ++c) {
        const double w0 = mpi::wtime();
        out_trip[c]->wait();
        if (c + 1 < chunks) out_trip[c + 1] = start_out_trip(c + 1);
        const double w1 = mpi::wtime();
        t.dispatch_wait += w1 - w0;
        auto progress = [&] {
            if (c + 1 < chunks) out_trip[c + 1]->test();
            if (c > 0) back_trip[c - 1]->test();
        };
        const size_t block = static_cast<size_t>(num_ranks) * num_local;
        std::span<const int> counts(&plan.recv_counts[c * block], block);
        std::span<float> received(recv_part(c), static_cast<size_t>(rows.recv_row[c + 1] - rows.recv_row[c]) * d);
        const size_t own_rows = static_cast<size_t>(rows.own_row[c + 1] - rows.own_row[c]);
        std::span<float> own(buf.own.data() + rows.own_row[c] * d, own_rows * d);
        std::span<const int64_t> own_token(buf.own_token.data() + rows.own_row[c], own_rows);
        std::vector<SourceRows> source(num_ranks, SourceRows{received.data(), nullptr, received.data()});
        source[self] = SourceRows{x_norm.data(), own_token.data(), own.data()};
        const ChunkRowsOfExperts rows_here{plan.local, counts, std::move(source),
                                           expert_block_starts(counts, plan.local.size(), self)};
        t.blocks_run += run_experts(experts, kernel, shape, rows_here, expert_threads, buf, progress);
        const double w2 = mpi::wtime();
        t.expert += w2 - w1;
        back_trip[c] =
            start_trip(comm, two_level, recv_part(c), rows.recv_elems[c], send_part(c), rows.send_elems[c], overlap);
        t.return_start += mpi::wtime() - w2;
    }
    for (auto& trip : back_trip) trip->wait();
    t.back = {buf.send.data(), buf.send.size()}, t.own = {buf.own.data(), buf.own.size()};
    return t;
}

// LayerResult::sent_bytes_*: the elements each trip sent to every other rank (out: send_elems, back: recv_elems),
// split by host. Two-level sends a row for another host first to the rank of this host with the destination's
// local index (unless that is this rank), then across (mpi::TwoLevelExchange).
void count_sent_bytes(const mpi::Comm& comm, const DispatchPlan& plan, bool two_level, const DispatchBuffers& buf,
                      LayerResult& result) {
    const int self = comm.rank(), per_host = two_level ? buf.two_level->ranks_per_host() : 1;
    for (int c = 0; c < plan.chunks; ++c)
        for (int r = 0; r < comm.size(); ++r) {
            if (r == self) continue;
            const double bytes =
                sizeof(float) * static_cast<double>(plan.rows.send_elems[c][r] + plan.rows.recv_elems[c][r]);
            if (buf.host_of[r] == buf.host_of[self]) {
                result.sent_bytes_on_host += bytes;
                continue;
            }
            result.sent_bytes_off_host += bytes;
            if (two_level && r % per_host != self % per_host) result.sent_bytes_on_host += bytes;
        }
}

}  // namespace

LayerResult moe_layer_forward(const mpi::Comm& comm, const ExpertMap& experts, const MlpKernel& kernel,
                              const ModelShape& shape, const Placement& placement, std::span<const float> x_norm,
                              const Routing& routing, int64_t first_token, int64_t step_tokens,
                              const DispatchOptions& options, std::span<float> out, LayerTimes& times,
                              DispatchBuffers& buf) {
    const int d = shape.d_model;
    EPMOE_ASSERT(x_norm.size() == static_cast<size_t>(routing.num_tokens()) * d && out.size() == x_norm.size());
    const double t0 = mpi::wtime();
    if (options.shared_exchange && !buf.window) buf.window = std::make_unique<mpi::SharedWindow>(comm);
    if (options.two_level && !buf.two_level) buf.two_level = std::make_unique<mpi::TwoLevelExchange>(comm);
    if (buf.host_of.size() != static_cast<size_t>(comm.size())) buf.host_of = mpi::host_leaders(comm);
    EPMOE_ASSERT(!options.two_level || (options.overlap_chunks <= 1 && !options.shared_exchange));
    EPMOE_ASSERT(!options.share_work || options.shared_exchange);
    DispatchPlan plan =
        plan_dispatch(comm, placement, routing, shape.num_experts, d, first_token, step_tokens, options, buf);
    const double p0 = mpi::wtime();
    if (!plan.mpi_gathers && !options.shared_exchange) pack_rows(x_norm, d, routing.top_k, buf);
    const double t1 = mpi::wtime();
    times.layout += plan.layout_s + t1 - p0;
    PipelineTimes pipeline = options.shared_exchange
                                 ? shared_exchange_and_run(comm, plan, experts, kernel, shape, x_norm,
                                                           options.expert_threads, options.share_work, buf)
                                 : exchange_and_run(comm, plan, experts, kernel, shape, x_norm, options.expert_threads,
                                                    options.two_level, buf);
    const double t2 = mpi::wtime();
    LayerResult result;
    result.expert_load.assign(shape.num_experts, 0);
    result.assigned = routing.num_tokens() * routing.top_k;
    combine_tokens(routing, pipeline.back, pipeline.own, buf.slot_row, d, out, result);
    const double t3 = mpi::wtime();
    times.weighted_sum += t3 - t2;
    result.kept = std::move(plan.kept);
    // Every row the experts ran, from every source (the shared-memory exchange receives none of this host's).
    for (int count : plan.recv_counts) result.rows_processed += count;
    result.rows_run = options.shared_exchange ? pipeline.rows_run : result.rows_processed;
    result.bytes_moved = pipeline.blocks_run * 3.0 * d * shape.d_ff * sizeof(float) +  // weights once per block run
                         2.0 * sizeof(float) * d *
                             static_cast<double>(plan.rows.send_row[plan.chunks] + plan.rows.recv_row[plan.chunks]);
    count_sent_bytes(comm, plan, options.two_level, buf, result);
    // Phases: dispatch = capacity, row layout, count exchange and every wait for tokens to arrive; expert = the
    // experts' compute; combine = starting the return trips, waiting for the results and the weighted sum.
    times.dispatch += t1 - t0 + pipeline.dispatch_wait;
    times.expert += pipeline.expert;
    times.combine += t3 - t1 - pipeline.dispatch_wait - pipeline.expert;
    return result;
}

}  // namespace epmoe
