// The dispatch plan of one layer and step: capacity, the row of each kept slot, the count exchange and what each
// chunk's exchange moves.
#include "epmoe/moe/plan.hpp"

#include <algorithm>
#include <climits>
#include <cmath>

#include "epmoe/base/error.hpp"
#include "epmoe/moe/dispatch.hpp"

namespace epmoe {

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
    const int own_first = self >= 0 ? placement.first_slot(self) : 0,
              own_end = self >= 0 ? placement.first_slot(self + 1) : 0;
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
    resize_discarding(buf.send, static_cast<size_t>(rows) * d);     // the results, back from other ranks
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

namespace {

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

// What each chunk moves. shared (the shared-memory exchange): the rows of ranks on this host stay in send for their
// owners to read, and none of theirs comes into recv: MPI moves rows only between hosts.
ChunkRows plan_chunks(const Placement& placement, const std::vector<int>& send_counts,
                      const std::vector<int>& recv_counts, int chunks, int num_local, int d, int self,
                      const mpi::SharedWindow* shared) {
    const int num_ranks = placement.num_ranks(), num_slots = placement.num_slots();
    ChunkRows plan{std::vector<std::vector<int>>(chunks, std::vector<int>(num_ranks)),
                   {},
                   std::vector<int64_t>(chunks + 1, 0),
                   {},
                   {},
                   {}};
    plan.recv_elems = plan.send_elems;
    plan.send_first.assign(chunks, std::vector<int64_t>(num_ranks, 0));
    plan.recv_row = plan.send_row;
    plan.own_row = plan.send_row;
    for (int c = 0; c < chunks; ++c) {
        int64_t sent = 0, received = 0, own = 0;
        for (int r = 0; r < num_ranks; ++r) {
            int64_t to = 0, from = 0;
            plan.send_first[c][r] = sent;
            for (int b = placement.first_slot(r); b < placement.first_slot(r + 1); ++b)
                to += send_counts[static_cast<size_t>(c) * num_slots + b];
            for (int j = 0; j < num_local; ++j)
                from += recv_counts[(static_cast<size_t>(c) * num_ranks + r) * num_local + j];
            if (r == self) {
                EPMOE_ASSERT(to == from);
                own += to;
                continue;
            }
            sent += to;
            if (shared && shared->host_rank_of(r) >= 0) continue;
            plan.send_elems[c][r] = mpi::to_int_count(static_cast<size_t>(to) * d, "alltoallv");
            plan.recv_elems[c][r] = mpi::to_int_count(static_cast<size_t>(from) * d, "alltoallv");
            received += from;
        }
        plan.send_row[c + 1] = plan.send_row[c] + sent;
        plan.recv_row[c + 1] = plan.recv_row[c] + received;
        plan.own_row[c + 1] = plan.own_row[c] + own;
    }
    return plan;
}

}  // namespace

std::vector<int64_t> expert_block_starts(std::span<const int> recv_counts, size_t num_local, int self) {
    std::vector<int64_t> start(recv_counts.size());
    int64_t rows = 0, own_rows = 0;
    for (size_t b = 0; b < recv_counts.size(); ++b) {
        int64_t& total = static_cast<int>(b / num_local) == self ? own_rows : rows;
        start[b] = total;
        total += recv_counts[b];
    }
    return start;
}

DispatchPlan plan_dispatch(const mpi::Comm& comm, const Placement& placement, const Routing& routing, int num_experts,
                           int d, int64_t first_token, int64_t step_tokens, const DispatchOptions& options,
                           DispatchBuffers& buf) {
    const int k = routing.top_k, self = comm.rank();
    const int64_t n = routing.num_tokens();
    DispatchPlan plan;
    plan.kept.assign(n * k, 1);
    if (options.capacity_factor > 0) {
        std::vector<int64_t> assigned(num_experts, 0);  // [E] assignments of this rank's tokens
        for (int32_t e : routing.expert_ids) ++assigned[e];
        std::vector<int64_t> before = mpi::exscan_sum<int64_t>(comm, assigned);
        apply_capacity(routing.expert_ids, num_experts, before,
                       expert_capacity(options.capacity_factor, step_tokens, k, num_experts), plan.kept);
    }
    plan.chunks = std::max(1, options.overlap_chunks);  // the same on every rank; some may be empty
    // Where the ranks block on one exchange, MPI gathers the sent rows from x_norm itself (MPI_Alltoallw with a
    // derived datatype a peer): one copy, where packing them into send first makes two. A non-blocking
    // exchange (overlap chunks, or the yielding wait mode) would move a gathered datatype in pieces, each
    // waiting for the rank's next MPI_Test, so there epmoe packs the rows into send first; so do simulated
    // ranks, whose sends are only modelled.
    // The shared-memory exchange packs the rows for other hosts into its window (dispatch_shared.cpp).
    const mpi::SharedWindow* shared = options.shared_exchange ? buf.window.get() : nullptr;
    EPMOE_ASSERT(!options.shared_exchange || (shared && plan.chunks == 1));
    plan.mpi_gathers = !shared && !options.two_level && plan.chunks == 1 && mpi::wait_mode() == mpi::WaitMode::kBlock &&
                       !sim::simulated();
    const double layout_start = mpi::wtime();
    plan.send_counts = assign_rows(placement, routing, plan.kept, d, first_token, buf, plan.chunks, self);
    plan.layout_s = mpi::wtime() - layout_start;
    plan.local = placement.experts_of(self);
    const int num_local = static_cast<int>(plan.local.size());
    plan.recv_counts = exchange_counts(comm, placement, plan.send_counts, plan.chunks, num_local);
    plan.rows = plan_chunks(placement, plan.send_counts, plan.recv_counts, plan.chunks, num_local, d, self, shared);
    return plan;
}

}  // namespace epmoe
