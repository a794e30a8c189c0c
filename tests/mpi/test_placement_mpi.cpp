// Replicated and balanced placements change where experts run, never what is computed; the fidelity
// counts (changed assignments, sampled output distance) match the plain reference. Runs at 1-4 ranks.
#include <gtest/gtest.h>

#include <cmath>

#include "../reference/moe_reference.hpp"
#include "epmoe/model/forward.hpp"
#include "epmoe/model/synthetic.hpp"

namespace epmoe {
namespace {

constexpr int64_t kTokens = 50;  // over all ranks

ModelShape shape(int num_layers) {
    ModelShape s;
    s.num_layers = num_layers;
    s.d_model = 24;
    s.d_ff = 40;
    s.num_experts = 8;
    s.top_k = 2;
    return s;
}

std::vector<float> tokens(const ModelShape& s) {
    WorkloadConfig w;
    w.skew = 1.2;
    w.num_clusters = 5;
    w.noise = 0.7;
    std::vector<float> out(kTokens * s.d_model);
    SyntheticWorkload(w, s.d_model, 7).fill(0, 0, kTokens, out);
    return out;
}

// This rank's rows after the distributed stack under placement; returns the step result.
StepResult run_rows(const mpi::Comm& comm, const ModelShape& s, const Placement& placement,
                    const std::vector<float>& biases, std::vector<float>& h) {
    Model mine = make_synthetic_model(s, 7, [&](int, int e) { return placement.owns(comm.rank(), e); });
    const int64_t begin = comm.rank() * kTokens / comm.size(), end = (comm.rank() + 1) * kTokens / comm.size();
    std::vector<float> all = tokens(s);
    h.assign(all.begin() + begin * s.d_model, all.begin() + end * s.d_model);
    Forward forward(mine, placement, 0.0);
    forward.set_fidelity_sample(3);
    return forward.step(comm, h, begin, kTokens, biases);
}

TEST(PlacementMpi, ReplicatedAndBalancedComputeTheSameAsContiguous) {
    mpi::Comm comm(MPI_COMM_WORLD);
    const ModelShape s = shape(3);
    const std::vector<double> profile = {900, 50, 40, 30, 20, 10, 5, 400};
    std::vector<float> base, h;
    run_rows(comm, s, Placement::make("contiguous", 8, comm.size()), {}, base);
    Model full = make_synthetic_model(s, 7, [](int, int) { return true; });
    reference::Output ref = reference::forward(full, tokens(s), 0.0);
    const int64_t begin = comm.rank() * kTokens / comm.size();
    for (const char* name : {"replicated", "balanced"}) {
        Placement placement = Placement::make(name, 8, comm.size(), profile, 2);
        if (comm.size() > 1 && std::string(name) == "replicated") EXPECT_EQ(placement.owners()[0].size(), 2u);
        run_rows(comm, s, placement, {}, h);
        double worst_base = 0, worst_ref = 0;
        for (size_t t = 0; t < h.size() / s.d_model; ++t) {
            worst_base =
                std::max(worst_base, reference::row_rel_l2(&h[t * s.d_model], &base[t * s.d_model], s.d_model));
            worst_ref = std::max(
                worst_ref, reference::row_rel_l2(&h[t * s.d_model], &ref.hidden[(begin + t) * s.d_model], s.d_model));
        }
        EXPECT_LE(worst_base, 1e-6) << name << " differs from contiguous on rank " << comm.rank();
        EXPECT_LE(worst_ref, 1e-5) << name << " differs from the reference on rank " << comm.rank();
    }
}

// One layer, so the layer output is h_out - h_in and the reference gives both routings' outputs.
TEST(PlacementMpi, FidelityCountsMatchTheReference) {
    mpi::Comm comm(MPI_COMM_WORLD);
    const ModelShape s = shape(1);
    std::vector<float> biases(8, 0.0f);
    biases[0] = -0.2f, biases[3] = 0.15f, biases[6] = 0.05f;
    Model full = make_synthetic_model(s, 7, [](int, int) { return true; });
    std::vector<float> in = tokens(s);
    reference::Output biased = reference::forward(full, in, 0.0, biases), plain = reference::forward(full, in, 0.0);
    double changed = 0, diff = 0, norm = 0;
    for (int64_t t = 0; t < kTokens; ++t) {
        for (int i = 0; i < 2; ++i) {
            int32_t e = biased.ids[0][t * 2 + i];
            changed += e != plain.ids[0][t * 2] && e != plain.ids[0][t * 2 + 1];
        }
        if (t % 3 != 0) continue;
        for (int j = 0; j < s.d_model; ++j) {
            double yb = biased.hidden[t * s.d_model + j] - in[t * s.d_model + j];
            double yu = plain.hidden[t * s.d_model + j] - in[t * s.d_model + j];
            diff += (yb - yu) * (yb - yu), norm += yu * yu;
        }
    }
    std::vector<float> h;
    StepResult r = run_rows(comm, s, Placement::make("contiguous", 8, comm.size()), biases, h);
    std::vector<double> sums = {r.fidelity.changed_slots, r.fidelity.slots, r.fidelity.diff_sq, r.fidelity.ref_sq};
    mpi::allreduce<double>(comm, sums, mpi::Op::kSum);
    EXPECT_GT(changed, 0) << "the biases must change some assignments";
    EXPECT_EQ(sums[0], changed);
    EXPECT_EQ(sums[1], kTokens * 2);
    EXPECT_NEAR(std::sqrt(sums[2] / sums[3]), std::sqrt(diff / norm), 1e-4);
    EXPECT_GT(r.fidelity.seconds, 0);
}

}  // namespace
}  // namespace epmoe
