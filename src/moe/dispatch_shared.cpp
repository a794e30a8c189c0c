// The shared-memory exchange (resources.exchange = shm): ranks of one host publish their input rows in an MPI-3
// shared window, and each expert's owner reads the rows it needs straight from the sender's segment and writes
// the results where the sender combines them. MPI moves rows only between hosts. With work sharing
// (resources.work_sharing = host) the unit of work is a row block of an expert (row_blocks), and a rank whose
// own blocks are all taken takes the next untaken blocks of the other ranks of its host: every rank of the host
// finishes at about the same time, whatever its load or its core's speed.
#include <atomic>
#include <cstdint>
#include <cstring>
#include <tuple>

#include "dispatch_internal.hpp"

namespace epmoe {
namespace {

// A rank's segment of the window, each part 64-byte aligned:
//   header  int64 [kHeader + P]: its input rows T, send rows S, own rows O, received rows R, local experts L, the
//           counter of its row blocks taken, then the first send row for each destination rank;
//   local   int32 [L] its experts; counts int32 [P * L] the rows of each of them from each source rank;
//   send_token [S], own_token [O]: the input row each send (own) row stands for;
//   x [T, d] the layer's normalised input; send [S, d] the rows for other hosts, packed, then every result;
//   own [O, d] the results of its own rows; recv [R, d] the rows from other hosts, then their results.
struct Segment {
    static constexpr int kHeader = 6;
    int64_t* header;
    int32_t* local;
    int32_t* counts;
    int64_t* send_token;
    int64_t* own_token;
    float *x, *send, *own, *recv;

    int64_t rows() const { return header[0]; }
    int64_t send_rows() const { return header[1]; }
    int64_t own_rows() const { return header[2]; }
    int64_t recv_rows() const { return header[3]; }
    int64_t num_local() const { return header[4]; }
    int64_t& blocks_taken() const { return header[5]; }
    int64_t first_row_for(int r) const { return header[kHeader + r]; }

    // The parts at base for the sizes given (base 0: only *bytes); `at` reads the sizes from the header there.
    static Segment lay_out(uintptr_t base, int num_ranks, int d, const int64_t* sizes, size_t* bytes = nullptr) {
        const int64_t t = sizes[0], s = sizes[1], o = sizes[2], r = sizes[3], l = sizes[4];
        size_t at = 0;
        auto part = [&](size_t part_bytes) {
            const uintptr_t p = base + at;
            at += mpi::segment_part_bytes(part_bytes);
            return p;
        };
        Segment seg;
        seg.header = reinterpret_cast<int64_t*>(part(sizeof(int64_t) * (kHeader + num_ranks)));
        seg.local = reinterpret_cast<int32_t*>(part(sizeof(int32_t) * l));
        seg.counts = reinterpret_cast<int32_t*>(part(sizeof(int32_t) * num_ranks * l));
        seg.send_token = reinterpret_cast<int64_t*>(part(sizeof(int64_t) * s));
        seg.own_token = reinterpret_cast<int64_t*>(part(sizeof(int64_t) * o));
        seg.x = reinterpret_cast<float*>(part(sizeof(float) * t * d));
        seg.send = reinterpret_cast<float*>(part(sizeof(float) * s * d));
        seg.own = reinterpret_cast<float*>(part(sizeof(float) * o * d));
        seg.recv = reinterpret_cast<float*>(part(sizeof(float) * r * d));
        if (bytes) *bytes = at;
        return seg;
    }
    static Segment at(char* base, int num_ranks, int d) {
        return lay_out(reinterpret_cast<uintptr_t>(base), num_ranks, d, reinterpret_cast<const int64_t*>(base));
    }
};

// Writes this rank's header, experts and row counts, tokens and input into its segment, and packs the rows for
// other hosts into its send part. Returns the segment.
Segment publish(mpi::SharedWindow& window, const DispatchPlan& plan, std::span<const float> x_norm, int d,
                const DispatchBuffers& buf) {
    const std::vector<int64_t>& first = plan.rows.send_first[0];
    const int num_ranks = static_cast<int>(first.size());
    const int64_t sizes[5] = {static_cast<int64_t>(x_norm.size()) / d, plan.rows.send_row[1], plan.rows.own_row[1],
                              plan.rows.recv_row[1], static_cast<int64_t>(plan.local.size())};
    size_t bytes = 0;
    Segment::lay_out(0, num_ranks, d, sizes, &bytes);
    window.reserve(bytes);
    Segment mine =
        Segment::lay_out(reinterpret_cast<uintptr_t>(window.segment(window.host_rank())), num_ranks, d, sizes);
    std::copy(sizes, sizes + 5, mine.header);
    mine.blocks_taken() = 0;
    std::copy(first.begin(), first.end(), mine.header + Segment::kHeader);
    std::copy(plan.local.begin(), plan.local.end(), mine.local);
    std::copy(plan.recv_counts.begin(), plan.recv_counts.end(), mine.counts);
    std::copy(buf.send_token.begin(), buf.send_token.begin() + sizes[1], mine.send_token);
    std::copy(buf.own_token.begin(), buf.own_token.begin() + sizes[2], mine.own_token);
    std::memcpy(mine.x, x_norm.data(), sizeof(float) * x_norm.size());
    for (int r = 0; r < num_ranks; ++r) {
        if (plan.rows.send_elems[0][r] == 0) continue;  // self, this host's ranks, and ranks sent nothing
        const int64_t end = first[r] + plan.rows.send_elems[0][r] / d;
        for (int64_t row = first[r]; row < end; ++row)
            std::memcpy(mine.send + row * d, x_norm.data() + buf.send_token[row] * d, sizeof(float) * d);
    }
    return mine;
}

// Where the rows of the experts of host rank h (comm rank `owner`) are: its own rows in its segment's x (results
// to its own), this host's other ranks' in their segments, the other hosts' in its recv; each block's first row
// counted in its source's rows.
ChunkRowsOfExperts rows_of_experts(const mpi::SharedWindow& window, int h, int owner, int num_ranks, int d) {
    const Segment seg = Segment::at(window.segment(h), num_ranks, d);
    const size_t num_local = static_cast<size_t>(seg.num_local());
    ChunkRowsOfExperts c{{seg.local, num_local},
                         {seg.counts, num_local * num_ranks},
                         std::vector<SourceRows>(num_ranks),
                         std::vector<int64_t>(num_local * num_ranks)};
    int64_t received = 0;
    for (int s = 0; s < num_ranks; ++s) {
        const int hs = window.host_rank_of(s);
        int64_t row = 0;  // the row of the source's block for expert j
        if (s == owner) {
            c.source[s] = SourceRows{seg.x, seg.own_token, seg.own};
        } else if (hs >= 0) {
            const Segment peer = Segment::at(window.segment(hs), num_ranks, d);
            c.source[s] = SourceRows{peer.x, peer.send_token, peer.send};
            row = peer.first_row_for(owner);
        } else {
            c.source[s] = SourceRows{seg.recv, nullptr, seg.recv};
            row = received;
        }
        for (size_t j = 0; j < num_local; ++j) {
            c.start[s * num_local + j] = row;
            row += c.recv_counts[s * num_local + j];
        }
        if (hs < 0) received = row;
    }
    return c;
}

// Takes and runs row blocks until none is left: this rank's own first, then (share_work) each other rank's of
// the host in turn, each rank's largest first. A block is taken by an atomic increment of its owner's counter in
// the window: the blocks in flight at the end are short ones, whichever core is slow. Each of
// `threads` threads runs this loop with its own buffers. Returns the blocks and rows this rank ran.
std::pair<int, int64_t> take_and_run_blocks(const mpi::SharedWindow& window, const ExpertMap& experts,
                                            const MlpKernel& kernel, const ModelShape& shape, int num_ranks,
                                            int threads, bool share_work, DispatchBuffers& buf) {
    const int hosts_ranks = share_work ? window.host_size() : 1, me = window.host_rank();
    std::vector<int> comm_rank(window.host_size());
    for (int r = 0; r < num_ranks; ++r)
        if (window.host_rank_of(r) >= 0) comm_rank[window.host_rank_of(r)] = r;
    std::vector<ChunkRowsOfExperts> rows;
    std::vector<std::vector<RowBlock>> blocks;
    for (int k = 0; k < hosts_ranks; ++k) {
        const int h = (me + k) % window.host_size();
        rows.push_back(rows_of_experts(window, h, comm_rank[h], num_ranks, shape.d_model));
        blocks.push_back(row_blocks(rows.back(), /*largest_first=*/true));
    }
    std::atomic<int> blocks_run{0};
    std::atomic<int64_t> rows_run{0};
    auto take_and_run = [&](ExpertScratch& es) {
        for (int k = 0; k < hosts_ranks; ++k) {
            const int h = (me + k) % window.host_size();
            std::atomic_ref<int64_t> taken(Segment::at(window.segment(h), num_ranks, shape.d_model).blocks_taken());
            for (int64_t i; (i = taken.fetch_add(1)) < static_cast<int64_t>(blocks[k].size());) {
                const RowBlock& b = blocks[k][i];
                rows[k].run(experts, kernel, shape, b.j, b.first, b.end, es);
                blocks_run += 1;
                rows_run += b.end - b.first;
            }
        }
    };
    if (threads <= 1) {
        take_and_run(buf.expert);
    } else {
        if (buf.task.size() < static_cast<size_t>(threads)) buf.task.resize(threads);
        run_tasks(threads, threads, [&](size_t, int slot) { take_and_run(buf.task[slot]); });
    }
    return {blocks_run.load(), rows_run.load()};
}

std::vector<int> elem_offsets(const std::vector<int64_t>& first_rows, int d) {
    std::vector<int> out(first_rows.size());
    for (size_t r = 0; r < out.size(); ++r)
        out[r] = mpi::to_int_count(static_cast<size_t>(first_rows[r]) * d, "alltoallv");
    return out;
}

std::vector<int> packed_offsets(const std::vector<int>& counts) {
    std::vector<int> out(counts.size());
    int64_t sum = 0;
    for (size_t r = 0; r < counts.size(); ++r) {
        out[r] = mpi::to_int_count(static_cast<size_t>(sum), "alltoallv");
        sum += counts[r];
    }
    return out;
}

}  // namespace

PipelineTimes shared_exchange_and_run(const mpi::Comm& comm, const DispatchPlan& plan, const ExpertMap& experts,
                                      const MlpKernel& kernel, const ModelShape& shape, std::span<const float> x_norm,
                                      int expert_threads, bool share_work, DispatchBuffers& buf) {
    EPMOE_ASSERT(plan.chunks == 1 && buf.window && !sim::simulated());
    mpi::SharedWindow& window = *buf.window;
    const int d = shape.d_model, num_ranks = comm.size();
    const ChunkRows& rows = plan.rows;
    PipelineTimes t;
    const double start = mpi::wtime();
    const Segment mine = publish(window, plan, x_norm, d, buf);
    window.sync();  // every rank's rows published
    const std::vector<int> send_offsets = elem_offsets(rows.send_first[0], d),
                           recv_offsets = packed_offsets(rows.recv_elems[0]);
    if (!window.whole_comm()) {
        mpi::alltoallv_at(comm, mine.send, rows.send_elems[0], send_offsets, mine.recv, rows.recv_elems[0],
                          recv_offsets, MPI_FLOAT);
        if (share_work) window.sync();  // every rank's rows from other hosts in place, for whoever runs them
    }
    const double w1 = mpi::wtime();
    t.dispatch_wait = w1 - start;
    std::tie(t.blocks_run, t.rows_run) =
        take_and_run_blocks(window, experts, kernel, shape, num_ranks, expert_threads, share_work, buf);
    const double w2 = mpi::wtime();
    t.expert = w2 - w1;
    window.sync();  // every result written where its sender combines it (or its owner sends it back)
    if (!window.whole_comm())
        mpi::alltoallv_at(comm, mine.recv, rows.recv_elems[0], recv_offsets, mine.send, rows.send_elems[0],
                          send_offsets, MPI_FLOAT);
    t.return_start = mpi::wtime() - w2;
    t.back = {mine.send, static_cast<size_t>(mine.send_rows()) * d};
    t.own = {mine.own, static_cast<size_t>(mine.own_rows()) * d};
    return t;
}

}  // namespace epmoe
