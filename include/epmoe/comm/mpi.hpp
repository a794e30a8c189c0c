// Thin typed wrappers over MPI. Raw MPI_* calls live only in src/comm/ (mpi.cpp, shared_window.cpp).
// Every collective is issued non-blocking and completed by a waiter that yields the core when idle,
// so oversubscribed ranks (4 ranks on 2 cores) do not starve each other under Open MPI or MPICH.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "epmoe/base/error.hpp"

namespace epmoe::mpi {

// RAII for MPI_Init_thread / MPI_Finalize. World errors return codes instead of aborting silently.
class Session {
public:
    Session(int* argc, char*** argv);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
};

// A communicator epmoe owns: dup'ed on construction, freed on destruction. Move-only.
class Comm {
public:
    explicit Comm(MPI_Comm parent);  // MPI_Comm_dup
    ~Comm();
    Comm(Comm&& other) noexcept;
    Comm& operator=(Comm&& other) noexcept;
    Comm(const Comm&) = delete;
    Comm& operator=(const Comm&) = delete;

    int rank() const { return rank_; }
    int size() const { return size_; }
    MPI_Comm raw() const { return comm_; }
    // The ranks of this communicator that share a host (MPI_COMM_TYPE_SHARED).
    Comm split_shared() const;
    // Sub-communicator of ranks passing the same color, ordered by key.
    Comm split(int color, int key) const;

private:
    struct Adopt {};
    Comm(MPI_Comm owned, Adopt);
    MPI_Comm comm_ = MPI_COMM_NULL;
    int rank_ = 0;
    int size_ = 1;
};

// The MPI datatype of T; unknown types fail to compile.
template <typename T>
MPI_Datatype type_of() {
    if constexpr (std::is_same_v<T, float>)
        return MPI_FLOAT;
    else if constexpr (std::is_same_v<T, double>)
        return MPI_DOUBLE;
    else if constexpr (std::is_same_v<T, int32_t>)
        return MPI_INT32_T;
    else if constexpr (std::is_same_v<T, int64_t>)
        return MPI_INT64_T;
    else if constexpr (std::is_same_v<T, uint64_t>)
        return MPI_UINT64_T;
    else if constexpr (std::is_same_v<T, char>)
        return MPI_CHAR;
    else if constexpr (std::is_same_v<T, uint8_t>)
        return MPI_UINT8_T;
    else
        static_assert(sizeof(T) == 0, "no MPI datatype for this type");
}

enum class Op { kSum, kMax, kMin };

// Untyped cores (src/comm/mpi.cpp); use the typed templates below.
void alltoallv_raw(const Comm& comm, const void* send, const std::vector<int>& send_counts, void* recv,
                   const std::vector<int>& recv_counts, MPI_Datatype type);
// The same with each peer's block at the given element offsets (a blocking call under the wait mode).
void alltoallv_at(const Comm& comm, const void* send, const std::vector<int>& send_counts,
                  const std::vector<int>& send_offsets, void* recv, const std::vector<int>& recv_counts,
                  const std::vector<int>& recv_offsets, MPI_Datatype type);
void allreduce_raw(const Comm& comm, void* data, int count, MPI_Datatype type, Op op);
void exscan_raw(const Comm& comm, const void* send, void* recv, int count, MPI_Datatype type);
void bcast_raw(const Comm& comm, void* data, int count, MPI_Datatype type, int root);
void gather_raw(const Comm& comm, const void* send, int count, void* recv, MPI_Datatype type, int root);
// Root receives counts[r] elements from each rank r, in rank order; counts are gathered first.
void gatherv_raw(const Comm& comm, const void* send, int count, std::vector<char>& recv, MPI_Datatype type,
                 size_t elem_size, int root);

// Every rank receives counts[r] elements from each rank r, in rank order; counts are gathered first and returned.
std::vector<int> allgatherv_raw(const Comm& comm, const void* send, int count, std::vector<char>& recv,
                                MPI_Datatype type, size_t elem_size);

// Checks that a count fits MPI's int; names what in the error.
int to_int_count(size_t n, const char* what);

// Exchanges one block of `block` ints with every rank: send is [size, block], returns [size, block].
std::vector<int> alltoall(const Comm& comm, const std::vector<int>& send, int block);

// send_counts[r] elements go to rank r (packed in rank order); recv is resized.
// Receive counts are exchanged first with alltoall. Returns recv_counts.
template <typename T>
std::vector<int> alltoallv(const Comm& comm, std::span<const T> send, const std::vector<int>& send_counts,
                           std::vector<T>& recv) {
    std::vector<int> recv_counts = alltoall(comm, send_counts, 1);
    size_t total = 0;
    for (int c : recv_counts) total += static_cast<size_t>(c);
    recv.resize(total);
    alltoallv_raw(comm, send.data(), send_counts, recv.data(), recv_counts, type_of<T>());
    return recv_counts;
}

// Same, when the receive counts are already known (no count exchange).
template <typename T>
void alltoallv_known(const Comm& comm, std::span<const T> send, const std::vector<int>& send_counts, std::span<T> recv,
                     const std::vector<int>& recv_counts) {
    alltoallv_raw(comm, send.data(), send_counts, recv.data(), recv_counts, type_of<T>());
}

// An alltoallv (displacements packed in rank order from the given pointers). With overlap it is a started
// MPI_Ialltoallv that owns the count and displacement arrays MPI reads until completion; test() drives
// progress (Open MPI and MPICH move data only inside MPI calls) and wait() completes it as the wait mode
// says. Without overlap, and always on simulated ranks (SMPI, see collective() in mpi.cpp), the constructor
// runs the whole collective as alltoallv_raw does, and test() and wait() do nothing.
class PendingAlltoallv {
public:
    PendingAlltoallv() = default;
    PendingAlltoallv(const Comm& comm, const void* send, std::vector<int> send_counts, void* recv,
                     std::vector<int> recv_counts, MPI_Datatype type, bool overlap);
    PendingAlltoallv(PendingAlltoallv&&) = delete;  // MPI holds pointers into it
    ~PendingAlltoallv();
    bool active() const { return request_ != MPI_REQUEST_NULL; }
    void test();
    void wait();

private:
    MPI_Request request_ = MPI_REQUEST_NULL;
    std::vector<int> send_counts_, send_offsets_, recv_counts_, recv_offsets_;
};

// A blocking alltoall of rows that leaves them where they are: rank r gets rows_to[r] rows of `base` (row_len
// elements of `type` each), the next rows_to[r] entries of `rows` (row indices into base, in rank order),
// which MPI gathers itself through one derived datatype a peer (MPI_Alltoallw): no copy before MPI's own.
// From rank r come recv_rows[r] rows, contiguous in rank order in recv. The blocking call whatever the wait
// mode (moe_layer_forward uses it only where ranks block, and says why); not for simulated ranks.
void alltoall_rows(const Comm& comm, const void* base, std::span<const int64_t> rows, const std::vector<int>& rows_to,
                   void* recv, const std::vector<int>& recv_rows, int row_len, MPI_Datatype type);

// In-place reduction over all ranks.
template <typename T>
void allreduce(const Comm& comm, std::span<T> data, Op op) {
    allreduce_raw(comm, data.data(), to_int_count(data.size(), "allreduce"), type_of<T>(), op);
}

template <typename T>
T allreduce_one(const Comm& comm, T value, Op op) {
    allreduce(comm, std::span<T>(&value, 1), op);
    return value;
}

// Exclusive prefix sum over ranks (rank 0 gets zeros).
template <typename T>
std::vector<T> exscan_sum(const Comm& comm, std::span<const T> data) {
    std::vector<T> out(data.size(), T{});
    exscan_raw(comm, data.data(), out.data(), to_int_count(data.size(), "exscan"), type_of<T>());
    if (comm.rank() == 0) std::fill(out.begin(), out.end(), T{});
    return out;
}

template <typename T>
void bcast(const Comm& comm, std::span<T> data, int root) {
    bcast_raw(comm, data.data(), to_int_count(data.size(), "bcast"), type_of<T>(), root);
}

// Gathers the same-size block from every rank; root gets [size, block], others an empty vector.
template <typename T>
std::vector<T> gather_to_root(const Comm& comm, std::span<const T> block, int root = 0) {
    std::vector<T> out(comm.rank() == root ? block.size() * comm.size() : 0);
    gather_raw(comm, block.data(), to_int_count(block.size(), "gather"), out.data(), type_of<T>(), root);
    return out;
}

// Blocks of any size, concatenated in rank order on root (others get an empty vector).
template <typename T>
std::vector<T> gatherv_to_root(const Comm& comm, std::span<const T> block, int root = 0) {
    std::vector<char> bytes;
    gatherv_raw(comm, block.data(), to_int_count(block.size(), "gatherv"), bytes, type_of<T>(), sizeof(T), root);
    std::vector<T> out(bytes.size() / sizeof(T));
    if (!bytes.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());  // non-root ranks get nothing
    return out;
}

// Blocks of any size, concatenated in rank order into all on every rank; returns each rank's element count.
template <typename T>
std::vector<int> allgatherv(const Comm& comm, std::span<const T> block, std::vector<T>& all) {
    std::vector<char> bytes;
    std::vector<int> counts =
        allgatherv_raw(comm, block.data(), to_int_count(block.size(), "allgatherv"), bytes, type_of<T>(), sizeof(T));
    all.resize(bytes.size() / sizeof(T));
    if (!bytes.empty()) std::memcpy(all.data(), bytes.data(), bytes.size());
    return counts;
}

// Every rank's string, on every rank.
inline std::vector<std::string> allgather_strings(const Comm& comm, const std::string& mine) {
    std::vector<char> all;
    const std::vector<int> lens = allgatherv<char>(comm, mine, all);
    std::vector<std::string> out;
    size_t at = 0;
    for (int len : lens) {
        out.emplace_back(all.data() + at, static_cast<size_t>(len));
        at += static_cast<size_t>(len);
    }
    return out;
}
void barrier(const Comm& comm);

// How this process waits for its collectives. kYield: start them non-blocking and complete them with a
// waiter that yields the core and naps when idle (for more ranks than cores: 4 ranks on 2 cores, MPICH's
// busy-polling would otherwise starve the ranks with work). kBlock: the blocking call, the MPI's own
// busy-poll (lowest latency, and large messages progress without gaps; for at most one rank a core).
enum class WaitMode { kYield, kBlock };
void set_wait_mode(WaitMode mode);  // process-wide; kYield until set
WaitMode wait_mode();

// Runs fn on every rank; if any rank throws (Error or std::exception), every rank throws
// AgreedError with the message of the lowest failing rank. No rank is left waiting.
void all_or_none(const Comm& comm, const std::function<void()>& fn);

// Ends the whole job with this exit code (MPI_Abort on the world).
[[noreturn]] void abort_job(int code);

std::string library_version();  // MPI_Get_library_version, first line
std::string processor_name();   // MPI_Get_processor_name
double wtime();                 // MPI_Wtime, seconds

}  // namespace epmoe::mpi
