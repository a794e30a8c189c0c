#include "epmoe/moe/dispatch.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>

#include "epmoe/ops/swiglu.hpp"

namespace epmoe {
namespace {

// Sizes a token buffer whose old contents are not needed: a buffer that must grow is freed first, then
// allocated at exactly n, so a step never holds the old and the new buffer at once, copies nothing, and
// keeps no doubling slack (in the SMPI build every simulated rank's buffers count).
void resize_discarding(sim::TokenBuffer& b, size_t n) {
    if (n > b.capacity()) {
        sim::TokenBuffer().swap(b);
        b.reserve(n);
    }
    b.resize(n);
}

}  // namespace

std::vector<int> assign_rows(const Placement& placement, const Routing& routing, std::span<const uint8_t> kept, int d,
                             int64_t first_token, DispatchBuffers& buf, int chunks, int self) {
    const int k = routing.top_k, num_slots = placement.num_slots();
    const int64_t n = routing.num_tokens();
    std::vector<int> counts(static_cast<size_t>(chunks) * num_slots, 0);
    std::vector<int> dest(n * k, -1);  // (chunk, slot) block of each kept assignment
    for (int64_t t = 0; t < n; ++t)
        for (int i = 0; i < k; ++i) {
            if (!kept[t * k + i]) continue;
            int e = routing.expert_ids[t * k + i];
            int chunk = static_cast<int>(t * chunks / n);
            dest[t * k + i] = chunk * num_slots + placement.slot(placement.rank_for(e, first_token + t), e);
            ++counts[dest[t * k + i]];
        }
    // Running row index per block, in send or (the blocks of self's slots) in own.
    const int own_first = self >= 0 ? placement.first_slot(self) : 0, own_end = self >= 0 ? placement.first_slot(self + 1) : 0;
    std::vector<int64_t> next(counts.size());
    std::vector<uint8_t> is_own(counts.size(), 0);
    int64_t rows = 0, own_rows = 0;
    for (size_t b = 0; b < counts.size(); ++b) {
        const int slot = static_cast<int>(b % num_slots);
        is_own[b] = slot >= own_first && slot < own_end;
        int64_t& total = is_own[b] ? own_rows : rows;
        next[b] = total;
        total += counts[b];
    }
    resize_discarding(buf.send, static_cast<size_t>(rows) * d);      // the results, back from other ranks
    resize_discarding(buf.own, static_cast<size_t>(own_rows) * d);  // the results of this rank's experts
    buf.send_token.resize(rows);
    buf.own_token.resize(own_rows);
    buf.slot_row.assign(n * k, -1);
    for (int64_t t = 0; t < n; ++t)
        for (int i = 0; i < k; ++i) {
            const int b = dest[t * k + i];
            if (b < 0) continue;
            const int64_t row = next[b]++;
            buf.slot_row[t * k + i] = is_own[b] ? -2 - row : row;
            (is_own[b] ? buf.own_token : buf.send_token)[row] = t;
        }
    return counts;
}

void pack_rows(std::span<const float> x, int d, int top_k, DispatchBuffers& buf) {
    const int64_t slots = static_cast<int64_t>(buf.slot_row.size());
    for (int64_t a = 0; a < slots; ++a)
        if (buf.slot_row[a] >= 0) std::memcpy(&buf.send[buf.slot_row[a] * d], &x[a / top_k * d], sizeof(float) * d);
}

namespace {

// Runs every local expert over one chunk's rows from all ranks (an expert's rows are gathered before its
// results are scattered back). local: this rank's experts, ascending; recv_counts: [P, local] rows from each
// source rank, by expert; recv: the chunk's rows from other ranks, in (source, expert) blocks, each
// overwritten by its result; own: receives the results for the chunk's rows of this rank (source self), by
// expert, whose inputs are the rows own_token of x. progress() runs after each expert (to let pending
// collectives move). Returns the experts run.
int run_experts(const ExpertMap& experts, const MlpKernel& kernel, const ModelShape& shape, const std::vector<int>& local,
                std::span<const int> recv_counts, int self, std::span<float> recv, std::span<const float> x,
                std::span<const int64_t> own_token, std::span<float> own, DispatchBuffers& buf,
                const std::function<void()>& progress) {
    const int num_local = static_cast<int>(local.size()), d = shape.d_model;
    const size_t num_ranks = num_local > 0 ? recv_counts.size() / num_local : 0;
    // Row offset of the (source, expert) block inside recv, or inside own for source self.
    std::vector<int64_t> start(recv_counts.size());
    int64_t rows = 0, own_rows = 0;
    for (size_t b = 0; b < recv_counts.size(); ++b) {
        int64_t& total = static_cast<int>(b / num_local) == self ? own_rows : rows;
        start[b] = total;
        total += recv_counts[b];
    }
    auto block = [&](size_t s, size_t b) { return (static_cast<int>(s) == self ? own.data() : recv.data()) + start[b] * d; };
    int ran = 0;
    for (int j = 0; j < num_local; ++j) {
        int64_t n_e = 0;
        for (size_t s = 0; s < num_ranks; ++s) n_e += recv_counts[s * num_local + j];
        if (n_e == 0) continue;
        ++ran;
        if (sim::simulated()) {  // modelled compute; gathering and scattering shared rows would only map pages
            sim::execute_mlp(d, shape.d_ff, n_e);
            continue;
        }
        auto it = experts.find(local[j]);
        EPMOE_ASSERT(it != experts.end());
        resize_discarding(buf.expert_in, n_e * d);
        resize_discarding(buf.expert_out, n_e * d);
        int64_t row = 0;
        for (size_t s = 0; s < num_ranks; ++s) {
            size_t b = s * num_local + j, bytes = sizeof(float) * recv_counts[b] * d;
            if (static_cast<int>(s) == self) {
                for (int64_t r = start[b]; r < start[b] + recv_counts[b]; ++r)
                    std::memcpy(&buf.expert_in[row++ * d], &x[own_token[r] * d], sizeof(float) * d);
                continue;
            }
            if (bytes > 0) std::memcpy(&buf.expert_in[row * d], block(s, b), bytes);
            row += recv_counts[b];
        }
        expert_forward(kernel, it->second, d, shape.d_ff, buf.expert_in, buf.expert_out, buf.scratch);
        row = 0;
        for (size_t s = 0; s < num_ranks; ++s) {
            size_t b = s * num_local + j, bytes = sizeof(float) * recv_counts[b] * d;
            if (bytes > 0) std::memcpy(block(s, b), &buf.expert_out[row * d], bytes);
            row += recv_counts[b];
        }
        progress();
    }
    return ran;
}

// Count exchange, every chunk at once: each peer gets the row counts of the experts it holds, in a block
// padded to the most any rank holds (one MPI_Alltoall, for which MPIs use a log(P)-round algorithm at small
// sizes). send_counts: [chunks, slots]. Returns [chunks, P, num_local]: rows of each local expert from each rank.
std::vector<int> exchange_counts(const mpi::Comm& comm, const Placement& placement, const std::vector<int>& send_counts,
                                 int chunks, int num_local) {
    const int num_ranks = comm.size(), num_slots = placement.num_slots();
    int block = 0;
    for (int r = 0; r < num_ranks; ++r) block = std::max(block, placement.first_slot(r + 1) - placement.first_slot(r));
    std::vector<int> padded(static_cast<size_t>(num_ranks) * chunks * block, 0);  // [P, chunks, block]
    for (int r = 0; r < num_ranks; ++r)
        for (int c = 0; c < chunks; ++c)
            std::copy(&send_counts[static_cast<size_t>(c) * num_slots + placement.first_slot(r)],
                      &send_counts[static_cast<size_t>(c) * num_slots + placement.first_slot(r + 1)],
                      &padded[(static_cast<size_t>(r) * chunks + c) * block]);
    padded = mpi::alltoall(comm, padded, chunks * block);
    std::vector<int> recv_counts(static_cast<size_t>(chunks) * num_ranks * num_local);
    for (int c = 0; c < chunks; ++c)
        for (int r = 0; r < num_ranks; ++r)
            std::copy_n(&padded[(static_cast<size_t>(r) * chunks + c) * block], num_local,
                        &recv_counts[(static_cast<size_t>(c) * num_ranks + r) * num_local]);
    return recv_counts;
}

// What each chunk's alltoallv moves: elements to and from each peer (none to or from self: own rows stay in
// own), and the chunk's first row in send, in recv and in own ([chunks + 1] each; the last entry is the total).
struct ChunkPlan {
    std::vector<std::vector<int>> send_elems, recv_elems;  // [chunks][P]
    std::vector<int64_t> send_row, recv_row, own_row;
};

ChunkPlan plan_chunks(const Placement& placement, const std::vector<int>& send_counts, const std::vector<int>& recv_counts,
                      int chunks, int num_local, int d, int self) {
    const int num_ranks = placement.num_ranks(), num_slots = placement.num_slots();
    ChunkPlan plan{std::vector<std::vector<int>>(chunks, std::vector<int>(num_ranks)), {}, std::vector<int64_t>(chunks + 1, 0), {}, {}};
    plan.recv_elems = plan.send_elems;
    plan.recv_row = plan.send_row;
    plan.own_row = plan.send_row;
    for (int c = 0; c < chunks; ++c) {
        int64_t sent = 0, received = 0, own = 0;
        for (int r = 0; r < num_ranks; ++r) {
            int64_t to = 0, from = 0;
            for (int b = placement.first_slot(r); b < placement.first_slot(r + 1); ++b)
                to += send_counts[static_cast<size_t>(c) * num_slots + b];
            for (int j = 0; j < num_local; ++j) from += recv_counts[(static_cast<size_t>(c) * num_ranks + r) * num_local + j];
            if (r == self) {
                EPMOE_ASSERT(to == from);
                own += to;
                continue;
            }
            plan.send_elems[c][r] = mpi::to_int_count(static_cast<size_t>(to) * d, "alltoallv");
            plan.recv_elems[c][r] = mpi::to_int_count(static_cast<size_t>(from) * d, "alltoallv");
            sent += to;
            received += from;
        }
        plan.send_row[c + 1] = plan.send_row[c] + sent;
        plan.recv_row[c + 1] = plan.recv_row[c] + received;
        plan.own_row[c + 1] = plan.own_row[c] + own;
    }
    return plan;
}

}  // namespace

int64_t expert_capacity(double capacity_factor, int64_t step_tokens, int top_k, int num_experts) {
    if (capacity_factor <= 0) return INT64_MAX;
    return static_cast<int64_t>(
        std::ceil(capacity_factor * static_cast<double>(step_tokens) * top_k / static_cast<double>(num_experts)));
}

void apply_capacity(std::span<const int32_t> expert_ids, int num_experts, std::span<const int64_t> counts_before,
                    int64_t capacity, std::span<uint8_t> kept) {
    std::vector<int64_t> position(counts_before.begin(), counts_before.end());
    EPMOE_ASSERT(static_cast<int>(position.size()) == num_experts && kept.size() == expert_ids.size());
    for (size_t a = 0; a < expert_ids.size(); ++a) kept[a] = position[expert_ids[a]]++ < capacity ? 1 : 0;
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

LayerResult moe_layer_forward(const mpi::Comm& comm, const ExpertMap& experts, const MlpKernel& kernel, const ModelShape& shape,
                              const Placement& placement, std::span<const float> x_norm, const Routing& routing,
                              int64_t first_token, int64_t step_tokens, const DispatchOptions& options,
                              std::span<float> out, LayerTimes& times, DispatchBuffers& buf) {
    const double capacity_factor = options.capacity_factor;
    const int num_experts = shape.num_experts, d = shape.d_model, k = routing.top_k;
    const int64_t n = routing.num_tokens();
    EPMOE_ASSERT(x_norm.size() == static_cast<size_t>(n) * d && out.size() == x_norm.size());
    double t0 = mpi::wtime();

    LayerResult result;
    result.expert_load.assign(num_experts, 0);
    result.assigned = n * k;
    result.kept.assign(n * k, 1);
    if (capacity_factor > 0) {
        std::vector<int64_t> assigned(num_experts, 0);  // [E] assignments of this rank's tokens
        for (int32_t e : routing.expert_ids) ++assigned[e];
        std::vector<int64_t> before = mpi::exscan_sum<int64_t>(comm, assigned);
        apply_capacity(routing.expert_ids, num_experts, before,
                       expert_capacity(capacity_factor, step_tokens, k, num_experts), result.kept);
    }
    const int num_ranks = comm.size(), chunks = std::max(1, options.overlap_chunks);  // the same on every rank; some may be empty
    const int self = comm.rank();
    // Where the ranks block on one exchange, MPI gathers the sent rows from x_norm itself (MPI_Alltoallw with a
    // derived datatype a peer): one copy, where packing them into send first makes two. A non-blocking
    // exchange (overlap chunks, or the yielding wait mode) would move a gathered datatype in pieces, each
    // waiting for the rank's next MPI_Test, so there epmoe packs the rows into send first; so do simulated
    // ranks, whose sends are only modelled.
    const bool mpi_gathers = chunks == 1 && mpi::wait_mode() == mpi::WaitMode::kBlock && !sim::simulated();
    const double p0 = mpi::wtime();
    std::vector<int> send_counts = assign_rows(placement, routing, result.kept, d, first_token, buf, chunks, self);
    if (!mpi_gathers) pack_rows(x_norm, d, k, buf);
    times.layout += mpi::wtime() - p0;
    const std::vector<int> local = placement.experts_of(self);
    const int num_local = static_cast<int>(local.size());
    const std::vector<int> recv_counts = exchange_counts(comm, placement, send_counts, chunks, num_local);
    const ChunkPlan plan = plan_chunks(placement, send_counts, recv_counts, chunks, num_local, d, self);
    const auto& send_elems = plan.send_elems;
    const auto& recv_elems = plan.recv_elems;
    const auto& recv_row = plan.recv_row;
    resize_discarding(buf.recv, static_cast<size_t>(recv_row[chunks]) * d);
    auto send_part = [&](int c) { return buf.send.data() + plan.send_row[c] * d; };
    auto recv_part = [&](int c) { return buf.recv.data() + recv_row[c] * d; };

    // The pipeline: chunk c + 1's tokens travel while chunk c's experts run, and chunk c's results travel
    // back while chunk c + 1's run. With one chunk it is dispatch, experts, return, in turn. The results come
    // back into send, in the layout the rows left in.
    std::vector<std::unique_ptr<mpi::PendingAlltoallv>> out_trip(chunks), back_trip(chunks);
    const bool overlap = chunks > 1;
    auto start_out_trip = [&](int c) {
        return std::make_unique<mpi::PendingAlltoallv>(comm, send_part(c), send_elems[c], recv_part(c), recv_elems[c],
                                                       MPI_FLOAT, overlap);
    };
    if (mpi_gathers) {
        std::vector<int> rows_to(num_ranks), recv_rows(num_ranks);
        for (int r = 0; r < num_ranks; ++r) {
            rows_to[r] = send_elems[0][r] / d;
            recv_rows[r] = recv_elems[0][r] / d;
        }
        mpi::alltoall_rows(comm, x_norm.data(), buf.send_token, rows_to, recv_part(0), recv_rows, d, MPI_FLOAT);
        out_trip[0] = std::make_unique<mpi::PendingAlltoallv>();
    } else {
        out_trip[0] = start_out_trip(0);
    }
    double t1 = mpi::wtime(), expert_s = 0, dispatch_wait_s = 0, return_s = 0;
    int experts_run = 0;
    for (int c = 0; c < chunks; ++c) {
        double w0 = mpi::wtime();
        out_trip[c]->wait();
        if (c + 1 < chunks) out_trip[c + 1] = start_out_trip(c + 1);
        double w1 = mpi::wtime();
        dispatch_wait_s += w1 - w0;
        auto progress = [&] {
            if (c + 1 < chunks) out_trip[c + 1]->test();
            if (c > 0) back_trip[c - 1]->test();
        };
        std::span<const int> counts(&recv_counts[static_cast<size_t>(c) * num_ranks * num_local],
                                    static_cast<size_t>(num_ranks) * num_local);
        std::span<float> rows(recv_part(c), static_cast<size_t>(recv_row[c + 1] - recv_row[c]) * d);
        std::span<float> own(buf.own.data() + plan.own_row[c] * d, static_cast<size_t>(plan.own_row[c + 1] - plan.own_row[c]) * d);
        std::span<const int64_t> own_token(buf.own_token.data() + plan.own_row[c],
                                           static_cast<size_t>(plan.own_row[c + 1] - plan.own_row[c]));
        experts_run += run_experts(experts, kernel, shape, local, counts, self, rows, x_norm, own_token, own, buf, progress);
        double w2 = mpi::wtime();
        expert_s += w2 - w1;
        // The results come back into send, in the layout they left in: send's rows are no longer needed.
        back_trip[c] = std::make_unique<mpi::PendingAlltoallv>(comm, recv_part(c), recv_elems[c], send_part(c), send_elems[c],
                                                               MPI_FLOAT, overlap);
        return_s += mpi::wtime() - w2;
    }
    double t2 = mpi::wtime();
    for (auto& trip : back_trip) trip->wait();
    const double s0 = mpi::wtime();
    combine_tokens(routing, buf.send, buf.own, buf.slot_row, d, out, result);
    double t3 = mpi::wtime();
    times.weighted_sum += t3 - s0;

    result.rows_processed = recv_row[chunks] + plan.own_row[chunks];
    result.bytes_moved = experts_run * 3.0 * d * shape.d_ff * sizeof(float) +  // weights read once per chunk run
                         2.0 * sizeof(float) * static_cast<double>(buf.send.size() + buf.recv.size());
    // Phases: dispatch = capacity, row layout, count exchange and every wait for tokens to arrive; expert = the
    // experts' compute; combine = waiting for the results and the weighted sum.
    times.dispatch += t1 - t0 + dispatch_wait_s;
    times.expert += expert_s;
    times.combine += t3 - t2 + return_s;
    return result;
}

}  // namespace epmoe
