#include "epmoe/comm/mpi.hpp"

#include <sched.h>
#include <time.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "check.hpp"
#include "epmoe/sim/sim.hpp"

namespace epmoe::mpi {

// Any MPI failure is a runtime failure of the job: say so once and end every rank within seconds.
void check(int rc, const char* what) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    std::fprintf(stderr, "epmoe: mpi error in %s: %.*s\n", what, len, text);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 3);
    std::_Exit(3);
}

namespace {

// Completes a request. Spins briefly for latency, then yields the core, then sleeps a little, so that
// oversubscribed ranks leave the CPU to the ranks that have work.
void wait(MPI_Request& request, const char* what) {
    int done = 0;
    for (int spin = 0; spin < 64 && !done; ++spin) check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), what);
    double start = MPI_Wtime();
    while (!done) {
        if (MPI_Wtime() - start < 1e-3) {
            sched_yield();
        } else {
            timespec nap{0, 20000};  // 20 us
            nanosleep(&nap, nullptr);
        }
        check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), what);
    }
}

// Runs one collective. Real ranks in WaitMode::kYield start it non-blocking and complete it with the
// yielding waiter above; in WaitMode::kBlock they call the blocking form.
// Simulated ranks (SMPI) call the blocking form: SMPI completes a non-blocking collective by waiting on its
// 2P point-to-point requests one by one (O(P^2) per call, minutes at 256 ranks), and the waiter's sleeps
// would count as simulated time.
WaitMode g_wait_mode = WaitMode::kYield;

template <typename Blocking, typename Start>
void collective(const char* what, Blocking blocking, Start start) {
    if (sim::simulated() || g_wait_mode == WaitMode::kBlock) return check(blocking(), what);
    MPI_Request request;
    check(start(&request), what);
    wait(request, what);
}

MPI_Op op_of(Op op) {
    switch (op) {
        case Op::kSum:
            return MPI_SUM;
        case Op::kMax:
            return MPI_MAX;
        case Op::kMin:
            return MPI_MIN;
    }
    EPMOE_ASSERT(false);
}

std::vector<int> prefix_offsets(const std::vector<int>& counts) {
    std::vector<int> offsets(counts.size(), 0);
    long long sum = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
        offsets[i] = static_cast<int>(sum);
        sum += counts[i];
    }
    if (sum > INT_MAX) fail("alltoallv: ", sum, " elements exceed MPI's int count limit");
    return offsets;
}

// The simulated alltoallv: the pairwise exchange SMPI's `pair` algorithm runs (step i: send to rank + i, receive
// from rank - i, both done before step i + 1), without its zero-size messages. SMPI's algorithms send every
// zero-size message too: P^2 simulated messages a call, while at scale a rank's rows go to few of the P peers.
void sparse_alltoallv(const Comm& comm, const void* send, const std::vector<int>& send_counts,
                      const std::vector<int>& send_offsets, void* recv, const std::vector<int>& recv_counts,
                      const std::vector<int>& recv_offsets, MPI_Datatype type) {
    constexpr int kTag = 7301;  // epmoe sends no other point-to-point message on a Comm
    const int num_ranks = comm.size(), rank = comm.rank();
    int size = 0;
    MPI_Type_size(type, &size);
    for (int step = 0; step < num_ranks; ++step) {
        const int to = (rank + step) % num_ranks, from = (rank - step + num_ranks) % num_ranks;
        MPI_Request requests[2];
        int n = 0;
        if (recv_counts[from] > 0)
            check(MPI_Irecv(static_cast<char*>(recv) + static_cast<ptrdiff_t>(recv_offsets[from]) * size,
                            recv_counts[from], type, from, kTag, comm.raw(), &requests[n++]),
                  "MPI_Irecv");
        if (send_counts[to] > 0)
            check(MPI_Isend(static_cast<const char*>(send) + static_cast<ptrdiff_t>(send_offsets[to]) * size,
                            send_counts[to], type, to, kTag, comm.raw(), &requests[n++]),
                  "MPI_Isend");
        if (n > 0) check(MPI_Waitall(n, requests, MPI_STATUSES_IGNORE), "MPI_Waitall");
    }
}

}  // namespace

Session::Session(int* argc, char*** argv) {
    int provided = 0;
    check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

Session::~Session() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
}

Comm::Comm(MPI_Comm parent) {
    check(MPI_Comm_dup(parent, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
}

Comm::Comm(MPI_Comm owned, Adopt) : comm_(owned) {
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
}

Comm::~Comm() {
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

Comm::Comm(Comm&& other) noexcept : comm_(other.comm_), rank_(other.rank_), size_(other.size_) {
    other.comm_ = MPI_COMM_NULL;
}

Comm& Comm::operator=(Comm&& other) noexcept {
    if (this != &other) {
        if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
        comm_ = other.comm_;
        rank_ = other.rank_;
        size_ = other.size_;
        other.comm_ = MPI_COMM_NULL;
    }
    return *this;
}

Comm Comm::split_shared() const {
    MPI_Comm out = MPI_COMM_NULL;
    check(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &out), "MPI_Comm_split_type");
    return Comm(out, Adopt{});
}

Comm Comm::split(int color, int key) const {
    MPI_Comm out = MPI_COMM_NULL;
    check(MPI_Comm_split(comm_, color, key, &out), "MPI_Comm_split");
    return Comm(out, Adopt{});
}

int to_int_count(size_t n, const char* what) {
    if (n > static_cast<size_t>(INT_MAX)) fail(what, ": ", n, " elements exceed MPI's int count limit");
    return static_cast<int>(n);
}

void alltoallv_raw(const Comm& comm, const void* send, const std::vector<int>& send_counts, void* recv,
                   const std::vector<int>& recv_counts, MPI_Datatype type) {
    EPMOE_ASSERT(static_cast<int>(send_counts.size()) == comm.size());
    EPMOE_ASSERT(static_cast<int>(recv_counts.size()) == comm.size());
    alltoallv_at(comm, send, send_counts, prefix_offsets(send_counts), recv, recv_counts, prefix_offsets(recv_counts),
                 type);
}

void alltoallv_at(const Comm& comm, const void* send, const std::vector<int>& send_counts,
                  const std::vector<int>& send_offsets, void* recv, const std::vector<int>& recv_counts,
                  const std::vector<int>& recv_offsets, MPI_Datatype type) {
    if (sim::simulated())
        return sparse_alltoallv(comm, send, send_counts, send_offsets, recv, recv_counts, recv_offsets, type);
    const int *sc = send_counts.data(), *so = send_offsets.data(), *rc = recv_counts.data(), *ro = recv_offsets.data();
    collective(
        "MPI_Alltoallv", [&] { return MPI_Alltoallv(send, sc, so, type, recv, rc, ro, type, comm.raw()); },
        [&](MPI_Request* r) { return MPI_Ialltoallv(send, sc, so, type, recv, rc, ro, type, comm.raw(), r); });
}

PendingAlltoallv::PendingAlltoallv(const Comm& comm, const void* send, std::vector<int> send_counts, void* recv,
                                   std::vector<int> recv_counts, MPI_Datatype type, bool overlap)
    : send_counts_(std::move(send_counts)), recv_counts_(std::move(recv_counts)) {
    if (!overlap || sim::simulated()) {
        alltoallv_raw(comm, send, send_counts_, recv, recv_counts_, type);
        return;
    }
    EPMOE_ASSERT(static_cast<int>(send_counts_.size()) == comm.size());
    EPMOE_ASSERT(static_cast<int>(recv_counts_.size()) == comm.size());
    send_offsets_ = prefix_offsets(send_counts_);
    recv_offsets_ = prefix_offsets(recv_counts_);
    const int *sc = send_counts_.data(), *so = send_offsets_.data(), *rc = recv_counts_.data(),
              *ro = recv_offsets_.data();
    check(MPI_Ialltoallv(send, sc, so, type, recv, rc, ro, type, comm.raw(), &request_), "MPI_Ialltoallv");
}

PendingAlltoallv::~PendingAlltoallv() {
    if (active()) wait();  // never leave MPI writing into freed buffers
}

void PendingAlltoallv::test() {
    if (!active()) return;
    int done = 0;
    check(MPI_Test(&request_, &done, MPI_STATUS_IGNORE), "MPI_Ialltoallv");
}

void PendingAlltoallv::wait() {
    if (!active()) return;
    if (g_wait_mode == WaitMode::kBlock)
        check(MPI_Wait(&request_, MPI_STATUS_IGNORE), "MPI_Ialltoallv");
    else
        mpi::wait(request_, "MPI_Ialltoallv");
    request_ = MPI_REQUEST_NULL;
}

void alltoall_rows(const Comm& comm, const void* base, std::span<const int64_t> rows, const std::vector<int>& rows_to,
                   void* recv, const std::vector<int>& recv_rows, int row_len, MPI_Datatype type) {
    const int num_ranks = comm.size();
    EPMOE_ASSERT(!sim::simulated());
    EPMOE_ASSERT(static_cast<int>(rows_to.size()) == num_ranks && static_cast<int>(recv_rows.size()) == num_ranks);
    int64_t listed = 0;
    for (int n : rows_to) listed += n;
    EPMOE_ASSERT(listed <= static_cast<int64_t>(rows.size()));  // every row sent is named in rows
    MPI_Aint lower = 0, extent = 0;
    check(MPI_Type_get_extent(type, &lower, &extent), "MPI_Type_get_extent");
    const MPI_Aint row_bytes = extent * row_len;
    // Every offset is inside the types (MPI_Aint bytes); MPI_Alltoallw's own displacements are int bytes.
    std::vector<int> send_counts(num_ranks, 0), recv_counts(num_ranks, 0), zeros(num_ranks, 0);
    std::vector<MPI_Datatype> send_types(num_ranks, MPI_BYTE), recv_types(num_ranks, MPI_BYTE);
    MPI_Datatype row;
    check(MPI_Type_contiguous(row_len, type, &row), "MPI_Type_contiguous");
    std::vector<MPI_Aint> offsets;
    size_t next = 0;
    MPI_Aint received = 0;
    for (int r = 0; r < num_ranks; ++r) {
        if (rows_to[r] > 0) {
            offsets.resize(rows_to[r]);
            for (MPI_Aint& offset : offsets) offset = static_cast<MPI_Aint>(rows[next++]) * row_bytes;
            check(MPI_Type_create_hindexed_block(rows_to[r], 1, offsets.data(), row, &send_types[r]),
                  "MPI_Type_create_hindexed_block");
            check(MPI_Type_commit(&send_types[r]), "MPI_Type_commit");
            send_counts[r] = 1;
        }
        if (recv_rows[r] > 0) {
            check(MPI_Type_create_hindexed_block(1, recv_rows[r], &received, row, &recv_types[r]),
                  "MPI_Type_create_hindexed_block");
            check(MPI_Type_commit(&recv_types[r]), "MPI_Type_commit");
            recv_counts[r] = 1;
            received += recv_rows[r] * row_bytes;
        }
    }
    EPMOE_ASSERT(next == rows.size());
    check(MPI_Alltoallw(base, send_counts.data(), zeros.data(), send_types.data(), recv, recv_counts.data(),
                        zeros.data(), recv_types.data(), comm.raw()),
          "MPI_Alltoallw");
    MPI_Type_free(&row);
    for (auto* types : {&send_types, &recv_types})
        for (MPI_Datatype& t : *types)
            if (t != MPI_BYTE) MPI_Type_free(&t);
}

std::vector<int> alltoall(const Comm& comm, const std::vector<int>& send, int block) {
    EPMOE_ASSERT(static_cast<int>(send.size()) == comm.size() * block);
    std::vector<int> recv(send.size());
    collective(
        "MPI_Alltoall",
        [&] { return MPI_Alltoall(send.data(), block, MPI_INT, recv.data(), block, MPI_INT, comm.raw()); },
        [&](MPI_Request* r) {
            return MPI_Ialltoall(send.data(), block, MPI_INT, recv.data(), block, MPI_INT, comm.raw(), r);
        });
    return recv;
}

void allreduce_raw(const Comm& comm, void* data, int count, MPI_Datatype type, Op op) {
    collective(
        "MPI_Allreduce", [&] { return MPI_Allreduce(MPI_IN_PLACE, data, count, type, op_of(op), comm.raw()); },
        [&](MPI_Request* r) { return MPI_Iallreduce(MPI_IN_PLACE, data, count, type, op_of(op), comm.raw(), r); });
}

void exscan_raw(const Comm& comm, const void* send, void* recv, int count, MPI_Datatype type) {
    collective(
        "MPI_Exscan", [&] { return MPI_Exscan(send, recv, count, type, MPI_SUM, comm.raw()); },
        [&](MPI_Request* r) { return MPI_Iexscan(send, recv, count, type, MPI_SUM, comm.raw(), r); });
}

void bcast_raw(const Comm& comm, void* data, int count, MPI_Datatype type, int root) {
    collective(
        "MPI_Bcast", [&] { return MPI_Bcast(data, count, type, root, comm.raw()); },
        [&](MPI_Request* r) { return MPI_Ibcast(data, count, type, root, comm.raw(), r); });
}

void gather_raw(const Comm& comm, const void* send, int count, void* recv, MPI_Datatype type, int root) {
    collective(
        "MPI_Gather", [&] { return MPI_Gather(send, count, type, recv, count, type, root, comm.raw()); },
        [&](MPI_Request* r) { return MPI_Igather(send, count, type, recv, count, type, root, comm.raw(), r); });
}

void gatherv_raw(const Comm& comm, const void* send, int count, std::vector<char>& recv, MPI_Datatype type,
                 size_t elem_size, int root) {
    std::vector<int> counts(comm.rank() == root ? comm.size() : 0);
    gather_raw(comm, &count, 1, counts.data(), MPI_INT, root);
    std::vector<int> offsets;
    if (comm.rank() == root) {
        offsets = prefix_offsets(counts);
        recv.resize((static_cast<size_t>(offsets.back()) + counts.back()) * elem_size);
    }
    const int *rc = counts.data(), *ro = offsets.data();
    collective(
        "MPI_Gatherv", [&] { return MPI_Gatherv(send, count, type, recv.data(), rc, ro, type, root, comm.raw()); },
        [&](MPI_Request* r) {
            return MPI_Igatherv(send, count, type, recv.data(), rc, ro, type, root, comm.raw(), r);
        });
}

std::vector<int> allgatherv_raw(const Comm& comm, const void* send, int count, std::vector<char>& recv,
                                MPI_Datatype type, size_t elem_size) {
    std::vector<int> counts(comm.size());
    collective(
        "MPI_Allgather", [&] { return MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, comm.raw()); },
        [&](MPI_Request* r) { return MPI_Iallgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, comm.raw(), r); });
    const std::vector<int> offsets = prefix_offsets(counts);
    recv.resize((static_cast<size_t>(offsets.back()) + counts.back()) * elem_size);
    const int *rc = counts.data(), *ro = offsets.data();
    collective(
        "MPI_Allgatherv", [&] { return MPI_Allgatherv(send, count, type, recv.data(), rc, ro, type, comm.raw()); },
        [&](MPI_Request* r) { return MPI_Iallgatherv(send, count, type, recv.data(), rc, ro, type, comm.raw(), r); });
    return counts;
}

void set_wait_mode(WaitMode mode) { g_wait_mode = mode; }
WaitMode wait_mode() { return g_wait_mode; }

void barrier(const Comm& comm) {
    collective(
        "MPI_Barrier", [&] { return MPI_Barrier(comm.raw()); },
        [&](MPI_Request* r) { return MPI_Ibarrier(comm.raw(), r); });
}

void all_or_none(const Comm& comm, const std::function<void()>& fn) {
    std::string message;
    bool failed = false;
    try {
        fn();
    } catch (const std::exception& e) {
        message = e.what();
        failed = true;
    }
    int lowest = allreduce_one(comm, failed ? comm.rank() : comm.size(), Op::kMin);
    if (lowest == comm.size()) return;
    int len = allreduce_one(comm, comm.rank() == lowest ? static_cast<int>(message.size()) : 0, Op::kMax);
    message.resize(static_cast<size_t>(len));
    bcast(comm, std::span<char>(message.data(), message.size()), lowest);
    throw AgreedError(message);
}

void abort_job(int code) {
    std::fflush(stdout);
    std::fflush(stderr);
    const timespec pause{0, 200 * 1000 * 1000};  // for MPICH's hydra to pass on the lines ranks just wrote
    nanosleep(&pause, nullptr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
}

std::string library_version() {
    char text[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(text, &len);
    std::string s(text, static_cast<size_t>(len));
    while (!s.empty() && (s.back() == '\n' || s.back() == '\0' || s.back() == ' ')) s.pop_back();
    return s.substr(0, s.find('\n'));
}

std::string processor_name() {
    char text[MPI_MAX_PROCESSOR_NAME];
    int len = 0;
    MPI_Get_processor_name(text, &len);
    return std::string(text, static_cast<size_t>(len));
}

double wtime() { return MPI_Wtime(); }

}  // namespace epmoe::mpi
