// The shared-memory exchange (resources.exchange = shm): ranks of one host publish their input rows in an MPI-3
// shared window, and each expert's owner reads the rows it needs straight from the sender's segment and writes
// the results where the sender combines them. MPI moves rows only between hosts.
#include <cstring>

#include "dispatch_internal.hpp"

namespace epmoe {
namespace {

constexpr size_t kAlign = 64;
size_t aligned(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// A rank's segment of the window: a header of int64 [2 + P] (its input rows T, its send rows S, then the first
// send row for each destination rank), send_token [S] (the input row each send row stands for), x [T, d] (the
// layer's normalised input) and send [S, d] (the rows for other hosts, packed, then every result), each part
// 64-byte aligned.
struct Segment {
    int64_t* header;
    int64_t* token;
    float* x;
    float* send;

    static size_t bytes(int num_ranks, int64_t rows, int64_t send_rows, int d) {
        return aligned(sizeof(int64_t) * (2 + num_ranks)) + aligned(sizeof(int64_t) * send_rows) +
               aligned(sizeof(float) * rows * d) + sizeof(float) * send_rows * d;
    }
    // The parts of the segment at base, laid out for the T and S its header holds.
    static Segment at(char* base, int num_ranks, int d) {
        Segment s;
        s.header = reinterpret_cast<int64_t*>(base);
        char* p = base + aligned(sizeof(int64_t) * (2 + num_ranks));
        s.token = reinterpret_cast<int64_t*>(p);
        p += aligned(sizeof(int64_t) * s.header[1]);
        s.x = reinterpret_cast<float*>(p);
        s.send = reinterpret_cast<float*>(p + aligned(sizeof(float) * s.header[0] * d));
        return s;
    }
    int64_t first_row_for(int r) const { return header[2 + r]; }
};

// Writes this rank's header, send_token and input into its segment, and packs the rows for other hosts into
// its send part. Returns the segment.
Segment publish(const mpi::SharedWindow& window, const DispatchPlan& plan, const std::vector<int64_t>& first,
                std::span<const float> x_norm, int d, const DispatchBuffers& buf) {
    const int num_ranks = static_cast<int>(first.size());
    const int64_t rows = static_cast<int64_t>(x_norm.size()) / d, send_rows = plan.rows.send_row[1];
    char* base = window.segment(window.host_rank());
    int64_t* header = reinterpret_cast<int64_t*>(base);
    header[0] = rows;
    header[1] = send_rows;
    std::copy(first.begin(), first.end(), header + 2);
    Segment mine = Segment::at(base, num_ranks, d);
    if (send_rows > 0) std::memcpy(mine.token, buf.send_token.data(), sizeof(int64_t) * send_rows);
    if (rows > 0) std::memcpy(mine.x, x_norm.data(), sizeof(float) * rows * d);
    for (int r = 0; r < num_ranks; ++r) {
        if (plan.rows.send_elems[0][r] == 0) continue;  // self, this host's ranks, and ranks sent nothing
        const int64_t end = first[r] + plan.rows.send_elems[0][r] / d;
        for (int64_t row = first[r]; row < end; ++row)
            std::memcpy(mine.send + row * d, x_norm.data() + buf.send_token[row] * d, sizeof(float) * d);
    }
    return mine;
}

// Where the chunk's rows of this rank's experts are: its own in x_norm (results to own), this host's in their
// senders' segments, the other hosts' in recv, each block's first row counted in its source's rows.
ChunkRowsOfExperts rows_of_experts(const mpi::SharedWindow& window, const DispatchPlan& plan, int self, int d,
                                   std::span<const float> x_norm, DispatchBuffers& buf) {
    const size_t num_local = plan.local.size(), num_ranks = plan.rows.send_elems[0].size();
    ChunkRowsOfExperts c{plan.local, plan.recv_counts, std::vector<SourceRows>(num_ranks),
                         std::vector<int64_t>(plan.recv_counts.size())};
    int64_t received = 0;
    for (size_t s = 0; s < num_ranks; ++s) {
        const int h = window.host_rank_of(static_cast<int>(s));
        int64_t row = 0;  // the row of the source's block for expert j
        if (static_cast<int>(s) == self) {
            c.source[s] = SourceRows{x_norm.data(), buf.own_token.data(), buf.own.data()};
        } else if (h >= 0) {
            const Segment peer = Segment::at(window.segment(h), static_cast<int>(num_ranks), d);
            c.source[s] = SourceRows{peer.x, peer.token, peer.send};
            row = peer.first_row_for(self);
        } else {
            c.source[s] = SourceRows{buf.recv.data(), nullptr, buf.recv.data()};
            row = received;
        }
        for (size_t j = 0; j < num_local; ++j) {
            c.start[s * num_local + j] = row;
            row += plan.recv_counts[s * num_local + j];
        }
        if (h < 0) received = row;
    }
    return c;
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
                                      int expert_threads, DispatchBuffers& buf) {
    EPMOE_ASSERT(plan.chunks == 1 && buf.window && !sim::simulated());
    mpi::SharedWindow& window = *buf.window;
    const int d = shape.d_model, num_ranks = comm.size(), self = comm.rank();
    const ChunkRows& rows = plan.rows;
    PipelineTimes t;
    const double start = mpi::wtime();
    const int64_t tokens = static_cast<int64_t>(x_norm.size()) / d;
    window.reserve(Segment::bytes(num_ranks, tokens, rows.send_row[1], d));
    resize_discarding(buf.recv, static_cast<size_t>(rows.recv_row[1]) * d);
    const std::vector<int64_t>& first = rows.send_first[0];
    Segment mine = publish(window, plan, first, x_norm, d, buf);
    window.sync();  // every rank's rows published
    const std::vector<int> send_offsets = elem_offsets(first, d), recv_offsets = packed_offsets(rows.recv_elems[0]);
    if (!window.whole_comm())
        mpi::alltoallv_at(comm, mine.send, rows.send_elems[0], send_offsets, buf.recv.data(), rows.recv_elems[0],
                          recv_offsets, MPI_FLOAT);
    const double w1 = mpi::wtime();
    t.dispatch_wait = w1 - start;
    const ChunkRowsOfExperts c = rows_of_experts(window, plan, self, d, x_norm, buf);
    t.experts_run = run_experts(experts, kernel, shape, c, expert_threads, buf, [] {});
    const double w2 = mpi::wtime();
    t.expert = w2 - w1;
    if (!window.whole_comm())
        mpi::alltoallv_at(comm, buf.recv.data(), rows.recv_elems[0], recv_offsets, mine.send, rows.send_elems[0],
                          send_offsets, MPI_FLOAT);
    window.sync();  // every result written where its sender combines it
    t.return_start = mpi::wtime() - w2;
    t.back = {mine.send, static_cast<size_t>(rows.send_row[1]) * d};
    return t;
}

}  // namespace epmoe
