#include "epmoe/comm/two_level.hpp"

#include <algorithm>
#include <cstring>

#include "check.hpp"

namespace epmoe::mpi {
namespace {

std::vector<int64_t> prefix(const std::vector<int>& counts) {
    std::vector<int64_t> out(counts.size() + 1, 0);
    for (size_t i = 0; i < counts.size(); ++i) out[i + 1] = out[i] + counts[i];
    return out;
}

void copy_floats(float* to, const float* from, int64_t n) {
    if (n > 0) std::memcpy(to, from, sizeof(float) * n);
}

void resize(sim::TokenBuffer& b, int64_t n) {
    if (static_cast<size_t>(n) > b.size()) b.resize(n);
}

}  // namespace

TwoLevelExchange::TwoLevelExchange(const Comm& comm)
    : host_(comm.split_shared()), lane_(comm.split(comm.rank() % host_.size(), comm.rank() / host_.size())) {
    const int k = host_.size();
    const int local = comm.rank() % k, consecutive = host_.rank() == local && comm.size() % k == 0;
    int all = 0;
    check(MPI_Allreduce(&consecutive, &all, 1, MPI_INT, MPI_LAND, comm.raw()), "MPI_Allreduce");
    int sizes[2] = {k, -k}, most[2];
    check(MPI_Allreduce(sizes, most, 2, MPI_INT, MPI_MAX, comm.raw()), "MPI_Allreduce");
    if (!all || most[0] != -most[1])  // the same on every rank (both reductions): one line, every rank exits 2
        throw AgreedError(cat("resources.inter_host = two_level: every host must hold the same number of ranks, ",
                              "consecutive (host sizes ", -most[1], " to ", most[0],
                              "; map the ranks by core or slot)"));
}

void TwoLevelExchange::alltoallv(const float* send, const std::vector<int>& send_counts, float* recv,
                                 const std::vector<int>& recv_counts) {
    const int k = host_.size(), hosts = lane_.size(), me = host_.rank(), num_ranks = k * hosts;
    // counts[i * P + r]: what local rank i sends rank r.
    std::vector<int> counts(static_cast<size_t>(k) * num_ranks);
    check(MPI_Allgather(send_counts.data(), num_ranks, MPI_INT, counts.data(), num_ranks, MPI_INT, host_.raw()),
          "MPI_Allgather");
    auto count = [&](int i, int b, int j) { return counts[static_cast<size_t>(i) * num_ranks + b * k + j]; };
    // Level 1, inside the host: to local rank j, the blocks for (host b, local j), b ascending.
    const std::vector<int64_t> send_at = prefix(send_counts);
    std::vector<int> to_local(k, 0), from_local(k, 0);
    resize(staged_, send_at.back());
    int64_t at = 0;
    for (int j = 0; j < k; ++j)
        for (int b = 0; b < hosts; ++b) {
            copy_floats(staged_.data() + at, send + send_at[b * k + j], send_counts[b * k + j]);
            at += send_counts[b * k + j];
            to_local[j] += send_counts[b * k + j];
        }
    for (int i = 0; i < k; ++i)
        for (int b = 0; b < hosts; ++b) from_local[i] += count(i, b, me);
    const std::vector<int64_t> from_at = prefix(from_local);
    resize(regrouped_, from_at.back());
    alltoallv_raw(host_, staged_.data(), to_local, regrouped_.data(), from_local, MPI_FLOAT);
    // Regroup by destination host (b, then source i), then level 2: one message to (host b, local me).
    std::vector<int> to_host(hosts, 0), from_host(hosts, 0);
    resize(staged_, from_at.back());
    at = 0;
    for (int b = 0; b < hosts; ++b)
        for (int i = 0; i < k; ++i) {
            int64_t offset = from_at[i];
            for (int c = 0; c < b; ++c) offset += count(i, c, me);
            copy_floats(staged_.data() + at, regrouped_.data() + offset, count(i, b, me));
            at += count(i, b, me);
            to_host[b] += count(i, b, me);
        }
    for (int a = 0; a < hosts; ++a)
        for (int i = 0; i < k; ++i) from_host[a] += recv_counts[a * k + i];
    // From host a come the rows of its ranks (a, 0..k-1) in order: recv's blocks of those ranks, contiguous.
    alltoallv_raw(lane_, staged_.data(), to_host, recv, from_host, MPI_FLOAT);
}

}  // namespace epmoe::mpi
