// Dispatch + combine against the bare collective (nccl-tests style), under MPI at any rank count.
// For each point (tokens per rank, routing uniform or skewed) it times, over --reps repetitions:
//   layer  epmoe's moe_layer_forward with an identity expert, wall time, max over ranks
//   ours   dispatch + combine on the critical path: layer minus the slowest rank's expert phase (the
//          gather/identity/scatter copies), i.e. capacity scan, row layout, count exchange, token exchange
//          (MPI_Alltoallw gathering the rows from x, or pack + MPI_Alltoallv), return alltoallv and weighted
//          combine. (A rank's own combine time would include waiting for the busier rank's experts under
//          skewed routing, which is imbalance, not data movement.)
//   bare   two blocking MPI_Alltoallv of exactly the same element counts (there and back), max over ranks
//          (they copy a rank's rows to itself too; epmoe keeps those out of MPI)
//   remote the same two without the rows a rank sends itself: what epmoe moves through MPI; and the
//          first of them alone (the second runs in lock-step right behind it, where the layer's return
//          follows the experts)
//   count  one bare MPI_Alltoall of the row counts epmoe's count exchange sends, max over ranks
//   copies the layer's own work on the rows, timed inside it (LayerTimes::layout + weighted_sum), max over ranks
//   floor  remote + count + copies of the same repetition: ours without any waiting between ranks
// and prints one JSON line per point on rank 0 with median/min/max of each and ours/bare. Points under 512
// tokens a rank take well under a millisecond and run 8x --reps, for stable medians on a noisy machine.
// Every point runs with both of epmoe's collective wait modes (mpi::WaitMode): yield (non-blocking +
// yielding waiter, the mode for oversubscribed ranks; epmoe packs) and block (the blocking call; MPI
// gathers). It checks its own result: with an identity expert and weights summing to 1 the layer must
// return its input (wrong = 0).
// Usage: mpirun -np 2 bench_dispatch [--reps N] [--d-model D] [--tokens T,...]
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include "bench_routing.hpp"
#include "epmoe/comm/mpi.hpp"
#include "epmoe/moe/dispatch.hpp"

namespace {

using namespace epmoe;

constexpr int kExperts = 8, kTopK = 2;

// y = x: isolates the data movement around the experts.
class IdentityKernel final : public MlpKernel {
public:
    std::string name() const override { return "identity"; }
    std::string implementation() const override { return "std::copy"; }
    void prepare(ExpertWeights&, int, int) const override {}
    void forward(const ExpertWeights&, int, int, std::span<const float> x, std::span<float> y,
                 std::vector<float>&) const override {
        std::copy(x.begin(), x.end(), y.begin());
    }
};

struct Stats {
    double median, min, max;
};
Stats stats(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return {v[v.size() / 2], v.front(), v.back()};
}
std::string json(const Stats& s) {
    char text[160];
    std::snprintf(text, sizeof text, "{\"median\": %.9g, \"min\": %.9g, \"max\": %.9g}", s.median, s.min, s.max);
    return text;
}

double max_over_ranks(const mpi::Comm& comm, double value) { return mpi::allreduce_one(comm, value, mpi::Op::kMax); }

// Returns 1 if the layer's output was wrong (on any rank), else 0.
int run_point(const mpi::Comm& comm, int64_t tokens, bool skewed, int d_model, int reps, mpi::WaitMode mode) {
    mpi::set_wait_mode(mode);
    const int num_ranks = comm.size(), rank = comm.rank();
    ModelShape shape;
    shape.num_layers = 1;
    shape.d_model = d_model;
    shape.d_ff = 1;
    shape.num_experts = kExperts;
    shape.top_k = kTopK;
    const Placement placement = Placement::make("contiguous", kExperts, num_ranks);
    ExpertMap experts;
    for (int e : placement.experts_of(rank)) experts[e];  // identity experts hold no weights
    const Routing routing = bench::top2_routing(tokens, kExperts, skewed, 11 + rank);
    std::mt19937 gen(3 + rank);
    std::normal_distribution<float> normal;
    std::vector<float> x(static_cast<size_t>(tokens) * d_model), out(x.size());
    for (float& v : x) v = normal(gen);
    IdentityKernel kernel;
    DispatchBuffers buf;

    // The element counts of both collectives, as the layer computes them.
    std::vector<uint8_t> kept(tokens * kTopK, 1);
    std::vector<int> counts = assign_rows(placement, routing, kept, d_model, 0, buf);  // rows per slot
    std::vector<int> send(num_ranks, 0);
    for (int r = 0; r < num_ranks; ++r)
        for (int b = placement.first_slot(r); b < placement.first_slot(r + 1); ++b) send[r] += counts[b] * d_model;
    std::vector<int> recv = mpi::alltoall(comm, send, 1);
    std::vector<int> sdispl(num_ranks, 0), rdispl(num_ranks, 0);
    for (int r = 1; r < num_ranks; ++r) {
        sdispl[r] = sdispl[r - 1] + send[r - 1];
        rdispl[r] = rdispl[r - 1] + recv[r - 1];
    }
    pack_rows(x, d_model, kTopK, buf);  // the rows packed, as a bare alltoallv needs them
    std::vector<float> bare_send(buf.send.begin(), buf.send.end());
    std::vector<float> bare_recv(rdispl.back() + recv.back()), bare_back(bare_send.size());
    // The same collectives without the rows a rank sends itself (displacements unchanged): what epmoe's
    // dispatch moves through MPI.
    std::vector<int> send_remote(send), recv_remote(recv);
    send_remote[rank] = recv_remote[rank] = 0;

    // The count exchange epmoe adds (one MPI_Alltoall of the row counts of the experts each peer holds),
    // timed bare: a bare MPI_Alltoallv is given its counts, epmoe's dispatch must exchange them.
    const int block = static_cast<int>(placement.experts_of(0).size());
    std::vector<int> count_send(static_cast<size_t>(num_ranks) * block, 1), count_recv(count_send.size());
    std::vector<double> ours, whole, bare, remote, count, copies, floor_total, remote_first;
    if (tokens < 512) reps *= 8;
    double worst = 0;
    for (int rep = 0; rep < reps + 1; ++rep) {  // rep 0 warms up
        MPI_Barrier(comm.raw());
        double t0 = MPI_Wtime();
        MPI_Alltoallv(bare_send.data(), send.data(), sdispl.data(), MPI_FLOAT, bare_recv.data(), recv.data(),
                      rdispl.data(), MPI_FLOAT, comm.raw());
        MPI_Alltoallv(bare_recv.data(), recv.data(), rdispl.data(), MPI_FLOAT, bare_back.data(), send.data(),
                      sdispl.data(), MPI_FLOAT, comm.raw());
        double bare_s = MPI_Wtime() - t0;

        MPI_Barrier(comm.raw());
        t0 = MPI_Wtime();
        MPI_Alltoallv(bare_send.data(), send_remote.data(), sdispl.data(), MPI_FLOAT, bare_recv.data(),
                      recv_remote.data(), rdispl.data(), MPI_FLOAT, comm.raw());
        const double remote_first_local = MPI_Wtime() - t0;
        MPI_Alltoallv(bare_recv.data(), recv_remote.data(), rdispl.data(), MPI_FLOAT, bare_back.data(),
                      send_remote.data(), sdispl.data(), MPI_FLOAT, comm.raw());
        double remote_s = max_over_ranks(comm, MPI_Wtime() - t0);
        const double remote_first_s = max_over_ranks(comm, remote_first_local);

        MPI_Barrier(comm.raw());
        t0 = MPI_Wtime();
        MPI_Alltoall(count_send.data(), block, MPI_INT, count_recv.data(), block, MPI_INT, comm.raw());
        double count_s = max_over_ranks(comm, MPI_Wtime() - t0);

        MPI_Barrier(comm.raw());
        LayerTimes times;
        t0 = MPI_Wtime();
        moe_layer_forward(comm, experts, kernel, shape, placement, x, routing, 0, tokens * num_ranks, DispatchOptions{},
                          out, times, buf);
        double whole_s = MPI_Wtime() - t0;
        bare_s = max_over_ranks(comm, bare_s);
        whole_s = max_over_ranks(comm, whole_s);
        const double ours_s = whole_s - max_over_ranks(comm, times.expert);
        const double copies_s = max_over_ranks(comm, times.layout + times.weighted_sum);
        if (rep == 0) continue;
        copies.push_back(copies_s);
        remote_first.push_back(remote_first_s);
        floor_total.push_back(remote_s + count_s + copies_s);
        bare.push_back(bare_s);
        count.push_back(count_s);
        remote.push_back(remote_s);
        ours.push_back(ours_s);
        whole.push_back(whole_s);
        for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, static_cast<double>(std::fabs(out[i] - x[i])));
        if (bare_back != bare_send) worst = 1e9;
    }
    const int wrong = max_over_ranks(comm, worst) > 1e-5 ? 1 : 0;
    int64_t rows = 0;  // token rows sent by this rank (kept slots)
    for (int c : counts) rows += c;
    const double bytes = 2.0 * sizeof(float) * static_cast<double>(rows) * d_model;  // there and back
    const double max_bytes = max_over_ranks(comm, bytes);
    if (rank != 0) return wrong;
    const Stats o = stats(ours), b = stats(bare), w = stats(whole), c = stats(count), rm = stats(remote),
                cp = stats(copies), f = stats(floor_total), rf = stats(remote_first);
    std::printf(
        "{\"bench\": \"dispatch\", \"wait\": \"%s\", \"ranks\": %d, \"tokens_per_rank\": %lld, \"routing\": \"%s\", "
        "\"d_model\": %d, \"num_experts\": %d, \"top_k\": %d, \"reps\": %d, \"max_rank_bytes\": %.0f, "
        "\"ours_s\": %s, \"layer_s\": %s, \"bare_alltoallv_s\": %s, \"bare_remote_alltoallv_s\": %s, "
        "\"bare_remote_first_s\": %s, \"count_alltoall_s\": %s, \"copies_s\": %s, \"floor_s\": %s, \"ours_over_bare\": "
        "%.4f, \"floor_over_bare\": %.4f, "
        "\"bare_gib_s\": %.4f, \"wrong\": %d}\n",
        mode == mpi::WaitMode::kBlock ? "block" : "yield", num_ranks, static_cast<long long>(tokens),
        skewed ? "skewed" : "uniform", d_model, kExperts, kTopK, reps, max_bytes, json(o).c_str(), json(w).c_str(),
        json(b).c_str(), json(rm).c_str(), json(rf).c_str(), json(c).c_str(), json(cp).c_str(), json(f).c_str(),
        o.median / b.median, f.median / b.median, max_bytes / b.median / (1 << 30), wrong);
    std::fflush(stdout);
    return wrong;
}

}  // namespace

int main(int argc, char** argv) {
    mpi::Session session(&argc, &argv);
    mpi::Comm world(MPI_COMM_WORLD);
    int reps = 30, d_model = 1024;
    std::vector<int64_t> tokens = {64, 2048};
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string flag = argv[i];
        if (flag == "--reps")
            reps = std::atoi(argv[i + 1]);
        else if (flag == "--d-model")
            d_model = std::atoi(argv[i + 1]);
        else if (flag == "--tokens") {
            tokens.clear();
            for (char* p = std::strtok(argv[i + 1], ","); p; p = std::strtok(nullptr, ","))
                tokens.push_back(std::atoll(p));
        }
    }
    int wrong = 0;
    for (int64_t t : tokens)
        for (bool skewed : {false, true})
            for (mpi::WaitMode mode : {mpi::WaitMode::kYield, mpi::WaitMode::kBlock})
                wrong += run_point(world, t, skewed, d_model, reps, mode);
    if (wrong && world.rank() == 0)
        std::fprintf(stderr, "bench_dispatch: %d point(s) returned a wrong result\n", wrong);
    return wrong ? 1 : 0;
}
