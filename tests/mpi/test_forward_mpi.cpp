// The distributed forward pass against the plain reference, at whatever rank count this runs with
// (ctest runs it at 1, 2, 3 and 4 ranks). Every rank checks its own tokens.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "../reference/moe_reference.hpp"
#include "epmoe/model/forward.hpp"
#include "epmoe/model/synthetic.hpp"

namespace epmoe {
namespace {

struct Case {
    const char* name;
    int num_experts, top_k;
    GateKind gate;
    bool norm_topk;
    double capacity_factor;
    const char* placement = "contiguous";
    int overlap_chunks = 1;  // compute.overlap_chunks
};

ModelShape shape_of(const Case& c) {
    ModelShape s;
    s.num_layers = 3;
    s.d_model = 24;
    s.d_ff = 40;
    s.num_experts = c.num_experts;
    s.top_k = c.top_k;
    s.gate = c.gate;
    s.norm_topk_prob = c.norm_topk;
    s.rms_norm_eps = 1e-6;
    return s;
}

WorkloadConfig workload() {
    WorkloadConfig w;
    w.skew = 1.0;
    w.num_clusters = 5;
    w.noise = 0.7;
    return w;
}

constexpr int64_t kTokens = 50;  // over all ranks; not divisible by 3 or 4 on purpose

// Rank r's rows of the step: floor(r T / P) .. floor((r+1) T / P).
std::pair<int64_t, int64_t> my_rows(const mpi::Comm& comm, int64_t total) {
    return {comm.rank() * total / comm.size(), (comm.rank() + 1) * total / comm.size()};
}

// Runs the distributed stack on this rank's rows; returns the hidden states and routing.
StepResult run_distributed(const mpi::Comm& comm, const Model& model, const Placement& placement, double cf,
                           const std::vector<float>& all_tokens, std::vector<float>& h,
                           const std::vector<float>& biases = {}, int overlap_chunks = 1, bool shared = false) {
    const int d = model.shape.d_model;
    auto [begin, end] = my_rows(comm, kTokens);
    h.assign(all_tokens.begin() + begin * d, all_tokens.begin() + end * d);
    Forward forward(model, placement, cf);
    forward.set_overlap_chunks(overlap_chunks);
    forward.set_shared_exchange(shared);
    return forward.step(comm, h, begin, kTokens, biases);
}

void check_against_reference(const Case& c, const std::function<void(Model&)>& edit = {},
                             const std::vector<float>& biases = {}) {
    mpi::Comm comm(MPI_COMM_WORLD);
    const ModelShape shape = shape_of(c);
    const uint64_t seed = 7;
    Placement placement = Placement::make(c.placement, shape.num_experts, comm.size());
    Model mine = make_synthetic_model(shape, seed, [&](int, int e) { return placement.owns(comm.rank(), e); });
    Model full = make_synthetic_model(shape, seed, [](int, int) { return true; });
    if (edit) edit(mine), edit(full);
    std::vector<float> tokens(kTokens * shape.d_model);
    SyntheticWorkload(workload(), shape.d_model, seed).fill(0, 0, kTokens, tokens);

    reference::Output ref = reference::forward(full, tokens, c.capacity_factor, biases);
    // Both wait modes: blocking ranks let MPI gather the rows they send (MPI_Alltoallw), yielding ranks pack
    // them first. The two must agree bit for bit; kYield, the default, runs last and stays set.
    std::vector<float> h, h_block;
    StepResult got;
    for (mpi::WaitMode mode : {mpi::WaitMode::kBlock, mpi::WaitMode::kYield}) {
        mpi::set_wait_mode(mode);
        got = run_distributed(comm, mine, placement, c.capacity_factor, tokens, h, biases, c.overlap_chunks);
        if (mode == mpi::WaitMode::kBlock) h_block = h;
    }
    EXPECT_EQ(h, h_block) << c.name << ": the gathered and the packed token exchange differ";
    if (c.overlap_chunks == 1) {  // the shared-memory exchange (resources.exchange = shm), in both wait modes
        std::vector<float> h_shared;
        for (mpi::WaitMode mode : {mpi::WaitMode::kBlock, mpi::WaitMode::kYield}) {
            mpi::set_wait_mode(mode);
            const StepResult shared =
                run_distributed(comm, mine, placement, c.capacity_factor, tokens, h_shared, biases, 1, true);
            EXPECT_EQ(h_shared, h_block) << c.name << ": the shared-memory exchange differs from MPI's";
            for (int l = 0; l < shape.num_layers; ++l)  // the rows this rank's experts ran, whichever way they came
                EXPECT_EQ(shared.layers[l].rows_processed, got.layers[l].rows_processed) << c.name << " layer " << l;
        }
    }

    auto [begin, end] = my_rows(comm, kTokens);
    const int d = shape.d_model, k = shape.top_k;
    double worst = 0;
    for (int64_t t = begin; t < end; ++t)
        worst = std::max(worst, reference::row_rel_l2(&h[(t - begin) * d], &ref.hidden[t * d], d));
    EXPECT_LE(worst, 1e-5) << c.name << " on rank " << comm.rank() << " of " << comm.size();
    // No ASSERT_* before the collective below: a rank that returned early would leave the others waiting.
    int64_t drops = 0, id_mismatches = 0, kept_mismatches = 0;
    double worst_weight = 0;
    for (int l = 0; l < shape.num_layers; ++l)
        for (int64_t t = begin; t < end; ++t)
            for (int i = 0; i < k; ++i) {
                const size_t mine_at = (t - begin) * k + i, ref_at = t * k + i;
                id_mismatches += got.routing[l].expert_ids[mine_at] != ref.ids[l][ref_at];
                kept_mismatches += got.layers[l].kept[mine_at] != ref.kept[l][ref_at];
                worst_weight =
                    std::max(worst_weight, std::abs(double(got.routing[l].weights[mine_at]) - ref.weights[l][ref_at]));
                drops += !ref.kept[l][ref_at];
            }
    EXPECT_EQ(id_mismatches, 0) << c.name << ": top-k ids differ from the reference";
    EXPECT_EQ(kept_mismatches, 0) << c.name << ": capacity drops differ from the reference";
    EXPECT_LE(worst_weight, 1e-6) << c.name;
    if (c.capacity_factor > 0) {
        int64_t all_drops = mpi::allreduce_one(comm, drops, mpi::Op::kSum);
        EXPECT_GT(all_drops, 0) << c.name << ": the capacity case must actually drop something";
    }
}

TEST(ForwardMpi, SoftmaxTop2Renormalised) {
    check_against_reference({"softmax k2 norm", 8, 2, GateKind::kSoftmax, true, 0});
}
TEST(ForwardMpi, SoftmaxTop1) { check_against_reference({"softmax k1", 8, 1, GateKind::kSoftmax, false, 0}); }
TEST(ForwardMpi, SoftmaxTop4NotRenormalised) {
    check_against_reference({"softmax k4", 8, 4, GateKind::kSoftmax, false, 0});
}
TEST(ForwardMpi, SigmoidTop2Renormalised) {
    check_against_reference({"sigmoid k2 norm", 8, 2, GateKind::kSigmoid, true, 0});
}
TEST(ForwardMpi, SigmoidTop4NotRenormalised) {
    check_against_reference({"sigmoid k4", 8, 4, GateKind::kSigmoid, false, 0});
}
TEST(ForwardMpi, SigmoidTop1Renormalised) {
    check_against_reference({"sigmoid k1 norm", 6, 1, GateKind::kSigmoid, true, 0});
}
TEST(ForwardMpi, CapacityDrops) { check_against_reference({"capacity 0.6", 8, 2, GateKind::kSoftmax, true, 0.6}); }
TEST(ForwardMpi, CapacityDropsTop4Sigmoid) {
    check_against_reference({"capacity k4", 8, 4, GateKind::kSigmoid, false, 0.8});
}
TEST(ForwardMpi, FewerExpertsThanRanks) { check_against_reference({"E=2", 2, 1, GateKind::kSoftmax, true, 0}); }
TEST(ForwardMpi, FewerExpertsThanRanksTop2) { check_against_reference({"E=3 k2", 3, 2, GateKind::kSoftmax, true, 0}); }
TEST(ForwardMpi, ExpertsNotDivisibleByRanks) { check_against_reference({"E=7", 7, 2, GateKind::kSoftmax, true, 0}); }
// Chunked dispatch (MPI_Ialltoallv of one chunk behind another's experts) computes the same layer.
TEST(ForwardMpi, OverlapTwoChunks) {
    check_against_reference({"2 chunks", 8, 2, GateKind::kSoftmax, true, 0, "contiguous", 2});
}
TEST(ForwardMpi, OverlapChunksWithCapacityAndFewExperts) {
    check_against_reference({"3 chunks, capacity", 3, 2, GateKind::kSigmoid, false, 0.7, "round_robin", 3});
}
TEST(ForwardMpi, OverlapMoreChunksThanTokens) {  // 64 chunks of 12-50 tokens: one token a chunk
    check_against_reference({"64 chunks", 8, 4, GateKind::kSoftmax, true, 0, "contiguous", 64});
}
TEST(ForwardMpi, RoundRobinPlacement) {
    check_against_reference({"round robin", 8, 2, GateKind::kSoftmax, true, 0, "round_robin"});
}

TEST(ForwardMpi, BiasSelectsButDoesNotWeight) {
    std::vector<float> biases(3 * 8, 0.0f);
    biases[3] = 0.5f, biases[8 + 6] = 0.3f, biases[16 + 1] = -0.2f;
    check_against_reference({"biased", 8, 2, GateKind::kSoftmax, true, 0}, {}, biases);
}

// Duplicated gate rows give exactly tied scores: the lower expert index must win, as in the reference.
TEST(ForwardMpi, TiesGoToTheLowerIndex) {
    auto duplicate = [](Model& m) {
        for (auto& layer : m.layers)
            std::copy(layer.gate.begin() + 2 * m.shape.d_model, layer.gate.begin() + 3 * m.shape.d_model,
                      layer.gate.begin() + 5 * m.shape.d_model);
    };
    Case c{"ties", 8, 1, GateKind::kSoftmax, true, 0};
    check_against_reference(c, duplicate);
    // Independently of the reference: expert 5 is never chosen over its twin 2 with top-1.
    mpi::Comm comm(MPI_COMM_WORLD);
    Placement placement = Placement::make("contiguous", 8, comm.size());
    Model m = make_synthetic_model(shape_of(c), 7, [&](int, int e) { return placement.owns(comm.rank(), e); });
    duplicate(m);
    std::vector<float> tokens(kTokens * 24), h;
    SyntheticWorkload(workload(), 24, 7).fill(0, 0, kTokens, tokens);
    StepResult r = run_distributed(comm, m, placement, 0, tokens, h);
    int64_t twos = 0;
    for (const auto& routing : r.routing)
        for (int32_t e : routing.expert_ids) {
            EXPECT_NE(e, 5);
            twos += e == 2;
        }
    EXPECT_GT(mpi::allreduce_one(comm, twos, mpi::Op::kSum), 0) << "the tie must actually occur";
}

// Same seed, same rank count: bit-identical output.
TEST(ForwardMpi, BitIdenticalAcrossRuns) {
    mpi::Comm comm(MPI_COMM_WORLD);
    Case c{"repeat", 8, 2, GateKind::kSoftmax, true, 0.9};
    Placement placement = Placement::make("contiguous", 8, comm.size());
    Model m = make_synthetic_model(shape_of(c), 11, [&](int, int e) { return placement.owns(comm.rank(), e); });
    std::vector<float> tokens(kTokens * 24), a, b;
    SyntheticWorkload(workload(), 24, 11).fill(3, 0, kTokens, tokens);
    run_distributed(comm, m, placement, 0.9, tokens, a);
    run_distributed(comm, m, placement, 0.9, tokens, b);
    EXPECT_TRUE(a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Rank 0 keeps the same tokens while the other ranks' tokens change: rank 0's output must not change
// (dropless; with a capacity factor the drops of rank 0's tokens could change, so it is not tested here).
TEST(ForwardMpi, OutputDoesNotDependOnOtherTokens) {
    mpi::Comm comm(MPI_COMM_WORLD);
    Case c{"independence", 8, 2, GateKind::kSoftmax, true, 0};
    Placement placement = Placement::make("contiguous", 8, comm.size());
    Model m = make_synthetic_model(shape_of(c), 5, [&](int, int e) { return placement.owns(comm.rank(), e); });
    std::vector<float> first(kTokens * 24), second(kTokens * 24), a, b;
    SyntheticWorkload(workload(), 24, 5).fill(0, 0, kTokens, first);
    SyntheticWorkload(workload(), 24, 5).fill(1, 0, kTokens, second);
    auto [begin, end] = my_rows(comm, kTokens);
    std::copy(first.begin(), first.begin() + end * 24, second.begin());  // rank 0's rows equal in both
    run_distributed(comm, m, placement, 0, first, a);
    run_distributed(comm, m, placement, 0, second, b);
    if (comm.rank() == 0) {
        double worst = 0;
        for (int64_t t = 0; t < end; ++t) worst = std::max(worst, reference::row_rel_l2(&b[t * 24], &a[t * 24], 24));
        // BLAS may round differently when an expert's row count changes; the contract is float rounding.
        EXPECT_LE(worst, 1e-6);
    }
}

}  // namespace
}  // namespace epmoe
