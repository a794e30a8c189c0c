// --policy ttt's rank invariance: the same steps of tokens run over all ranks and on each rank alone give the
// same corrections after every update and the same routing, bit for bit (ctest runs this at 1, 2, 3 and 4 ranks).
// The rank term of the balance reads the world's placement in both; the energy term, which reads what each rank
// measured, is off (no joules).
#include <gtest/gtest.h>

#include <cmath>

#include "epmoe/control/ttt.hpp"
#include "epmoe/model/forward.hpp"
#include "epmoe/model/synthetic.hpp"

namespace epmoe {
namespace {

constexpr int64_t kTokens = 46;  // a step over all ranks; not divisible by 3 or 4
constexpr int kSteps = 4;

ModelShape small_shape() {
    ModelShape s;
    s.num_layers = 2, s.d_model = 20, s.d_ff = 24, s.num_experts = 6, s.top_k = 2;
    s.norm_topk_prob = true, s.rms_norm_eps = 1e-6;
    return s;
}

struct TttRun {
    std::vector<std::vector<float>> corrections;  // [step] every layer's A, B and b after the step's update
    std::vector<int32_t> experts;                 // the last step's expert ids of this rank's rows, every layer
};

// kSteps steps of the synthetic workload over comm's ranks (rank r: rows floor(r T / P) .. of every step), an update
// after each. Only rows [begin, end) of the last step's routing are kept.
TttRun run(const mpi::Comm& comm, const Placement& world_placement, int64_t begin, int64_t end) {
    const ModelShape shape = small_shape();
    const Placement placement = Placement::make("contiguous", shape.num_experts, comm.size());
    const Model model = make_synthetic_model(shape, 5, [&](int, int e) { return placement.owns(comm.rank(), e); });
    Forward forward(model, placement, 0.0);
    PolicyConfig::Ttt config;
    config.rank = 3, config.lr = 0.05, config.iters = 2, config.balance = 3, config.energy = 0.1, config.fidelity = 1;
    config.max_delta_ppl = 0.01, config.check_every = 1, config.holdout_windows = 1, config.sample_every = 2;
    TestTimeRouter ttt(config, shape, {1, 1}, world_placement, 9, "none");
    forward.set_adaptation(&ttt.adaptation());
    WorkloadConfig w;
    w.skew = 1.5, w.num_clusters = 4, w.noise = 0.5, w.drift = 0.3;
    SyntheticWorkload workload(w, shape.d_model, 5);
    const int64_t first = comm.rank() * kTokens / comm.size(), last = (comm.rank() + 1) * kTokens / comm.size();
    TttRun out;
    for (int step = 0; step < kSteps; ++step) {
        std::vector<float> h((last - first) * shape.d_model);
        workload.fill(step, first, last - first, h);
        const StepResult result = forward.step(comm, h, first, kTokens, {});
        ttt.update(comm, result);
        std::vector<float> all;
        for (const RouterCorrection& c : ttt.adaptation().layers) {
            all.insert(all.end(), c.a.begin(), c.a.end());
            all.insert(all.end(), c.b.begin(), c.b.end());
            all.insert(all.end(), c.bias.begin(), c.bias.end());
        }
        out.corrections.push_back(all);
        if (step + 1 < kSteps) continue;
        for (const Routing& r : result.routing)
            out.experts.insert(out.experts.end(), r.expert_ids.begin() + (begin - first) * r.top_k,
                               r.expert_ids.begin() + (end - first) * r.top_k);
    }
    return out;
}

TEST(Ttt, SameCorrectionsAndRoutingAtEveryRankCount) {
    const mpi::Comm world(MPI_COMM_WORLD);
    const int64_t begin = world.rank() * kTokens / world.size(), end = (world.rank() + 1) * kTokens / world.size();
    const Placement placement = Placement::make("contiguous", small_shape().num_experts, world.size());
    const TttRun all = run(world, placement, begin, end);
    const mpi::Comm solo = world.split(world.rank(), 0);
    const TttRun alone = run(solo, placement, begin, end);
    ASSERT_EQ(all.corrections.size(), alone.corrections.size());
    for (size_t s = 0; s < all.corrections.size(); ++s)
        EXPECT_EQ(all.corrections[s], alone.corrections[s]) << "step " << s;
    EXPECT_EQ(all.experts, alone.experts);
    double moved = 0;
    for (size_t i = 0; i < all.corrections.back().size(); ++i)
        moved += std::abs(all.corrections.back()[i] - all.corrections.front()[i]);
    EXPECT_GT(moved, 0);  // the correction learned something
}

}  // namespace
}  // namespace epmoe
