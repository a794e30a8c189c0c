// The optimizer's collectives (src/train/grad_sync.cpp) at 1-4 ranks: the gradient all-reduce of replicated
// tensors (over the world and over a sub-communicator, through buffers small enough that tensors straddle
// calls), the global norm that counts each replicated tensor once, clipping, and AdamW steps whose replicated
// weights are the same bits on every rank and match, at every rank count, the one-rank computation.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "epmoe/comm/mpi.hpp"
#include "epmoe/train/optim.hpp"

namespace epmoe {
namespace {

constexpr int kTokens = 12;  // the global batch: each rank holds tokens [r T / P, (r + 1) T / P)
constexpr int kExperts = 6;  // expert e lives on rank e % P
constexpr int kExpertSize = 50;
const std::vector<int> kReplicatedSizes = {1000, 37, 0, 5};

// Token t's contribution to element i of replicated tensor k: multiples of 1/8, so every sum is exact.
float contribution(int t, int k, int i) { return static_cast<float>(((t * 7 + i + 3 * k) % 9) - 4) / 8.0f; }
// Element i of expert e's gradient (the exchange already brought every rank's tokens to it).
float expert_grad(int e, int i) { return static_cast<float>((e * 5 + i) % 7 - 3) / 4.0f; }

// A model of replicated tensors and experts, with each rank's gradients of its share of the batch; with
// `whole`, one rank holding every token and every expert (the one-rank reference, replicas = nullptr).
struct OptimModel {
    std::vector<std::vector<float>> values, grads;
    ParamRegistry registry;

    OptimModel(const mpi::Comm* world, int rank, int ranks) {
        const int first = rank * kTokens / ranks, last = (rank + 1) * kTokens / ranks;
        for (size_t k = 0; k < kReplicatedSizes.size(); ++k) {
            values.emplace_back(kReplicatedSizes[k]);
            grads.emplace_back(kReplicatedSizes[k], 0.0f);
            for (int i = 0; i < kReplicatedSizes[k]; ++i) {
                values.back()[i] = 0.01f * static_cast<float>(i % 13) - 0.05f;
                for (int t = first; t < last; ++t) grads.back()[i] += contribution(t, static_cast<int>(k), i);
            }
        }
        for (int e = rank; e < kExperts; e += ranks) {
            values.emplace_back(kExpertSize, 0.1f * static_cast<float>(e));
            grads.emplace_back(kExpertSize);
            for (int i = 0; i < kExpertSize; ++i) grads.back()[i] = expert_grad(e, i);
        }
        for (size_t j = 0; j < values.size(); ++j) {
            const bool replicated = j < kReplicatedSizes.size();
            // Decay on every other tensor, by its identity (replicated k, or expert e), not its index here.
            const int id =
                replicated ? static_cast<int>(j) : rank + static_cast<int>(j - kReplicatedSizes.size()) * ranks;
            registry.add(Param{.name = "p" + std::to_string(j),
                               .value = values[j],
                               .grad = grads[j],
                               .decay = id % 2 == 0,
                               .replicas = replicated ? world : nullptr});
        }
    }
    void refill_grads(int rank, int ranks, int step) {
        OptimModel fresh(nullptr, rank, ranks);
        for (size_t j = 0; j < grads.size(); ++j)
            for (size_t i = 0; i < grads[j].size(); ++i) grads[j][i] = fresh.grads[j][i] * (1.0f + 0.25f * step);
    }
};

// The squared norm of the whole model's gradient, from the definitions, in double.
double expected_sq_norm() {
    double sum = 0;
    for (size_t k = 0; k < kReplicatedSizes.size(); ++k)
        for (int i = 0; i < kReplicatedSizes[k]; ++i) {
            double g = 0;
            for (int t = 0; t < kTokens; ++t) g += contribution(t, static_cast<int>(k), i);
            sum += g * g;
        }
    for (int e = 0; e < kExperts; ++e)
        for (int i = 0; i < kExpertSize; ++i) sum += double{expert_grad(e, i)} * expert_grad(e, i);
    return sum;
}

// Whether x is the same bits on every rank.
bool same_on_every_rank(const mpi::Comm& world, double x) {
    return mpi::allreduce_one(world, x, mpi::Op::kMax) == mpi::allreduce_one(world, x, mpi::Op::kMin);
}

TEST(OptimMpi, AllreduceSumsReplicatedTensorsAcrossBufferSizes) {
    mpi::Comm world(MPI_COMM_WORLD);
    for (size_t buffer : {size_t{1} << 24, size_t{100}, size_t{1}, size_t{999}}) {
        OptimModel model(&world, world.rank(), world.size());
        allreduce_gradients(model.registry, buffer);
        for (size_t k = 0; k < kReplicatedSizes.size(); ++k)
            for (int i = 0; i < kReplicatedSizes[k]; ++i) {
                float want = 0;
                for (int t = 0; t < kTokens; ++t) want += contribution(t, static_cast<int>(k), i);
                ASSERT_EQ(model.grads[k][i], want) << "buffer " << buffer << " tensor " << k << " element " << i;
            }
        for (size_t j = kReplicatedSizes.size(); j < model.grads.size(); ++j)  // experts: untouched
            for (int i = 0; i < kExpertSize; ++i) {
                const int e = world.rank() + static_cast<int>(j - kReplicatedSizes.size()) * world.size();
                ASSERT_EQ(model.grads[j][i], expert_grad(e, i));
            }
    }
}

TEST(OptimMpi, GlobalNormCountsEachTensorOnceAtEveryRankCount) {
    mpi::Comm world(MPI_COMM_WORLD);
    OptimModel model(&world, world.rank(), world.size());
    allreduce_gradients(model.registry);
    const double norm = global_grad_norm(model.registry, world);
    EXPECT_NEAR(norm, std::sqrt(expected_sq_norm()), 1e-12 * norm);  // the same value whatever P
    EXPECT_TRUE(same_on_every_rank(world, norm));
    const double max_norm = norm / 3;
    EXPECT_EQ(clip_grad_norm(model.registry, world, max_norm), norm);
    const double clipped = global_grad_norm(model.registry, world);
    EXPECT_NEAR(clipped, max_norm, 1e-6 * max_norm);
    EXPECT_EQ(clip_grad_norm(model.registry, world, 10 * norm), clipped);  // under the threshold: unchanged
    EXPECT_EQ(global_grad_norm(model.registry, world), clipped);
}

TEST(OptimMpi, SubCommunicatorReplicasAreSummedAndCountedOnce) {
    mpi::Comm world(MPI_COMM_WORLD);
    const int color = world.rank() % 2, groups = std::min(world.size(), 2);
    mpi::Comm group = world.split(color, world.rank());  // the replicas of one expert group under DP x EP
    std::vector<float> world_value(7), world_grad(7), group_value(20), group_grad(20);
    for (int i = 0; i < 7; ++i) world_grad[i] = static_cast<float>(i + world.rank());
    for (int i = 0; i < 20; ++i) group_grad[i] = static_cast<float>((i % 3) * (world.rank() + 1));
    ParamRegistry registry;
    registry.add(Param{.name = "w", .value = world_value, .grad = world_grad, .replicas = &world});
    registry.add(Param{.name = "g", .value = group_value, .grad = group_grad, .replicas = &group});
    allreduce_gradients(registry, 8);
    double want_sq = 0;
    const int p = world.size();
    for (int i = 0; i < 7; ++i) {
        const double w = 1.0 * i * p + p * (p - 1) / 2.0;  // sum over r of (i + r)
        EXPECT_EQ(world_grad[i], w);
        want_sq += w * w;
    }
    for (int c = 0; c < groups; ++c) {
        double rank_sum = 0;  // sum over the group's ranks r of (r + 1)
        for (int r = c; r < p; r += 2) rank_sum += r + 1;
        for (int i = 0; i < 20; ++i) {
            if (c == color) EXPECT_EQ(group_grad[i], (i % 3) * rank_sum);
            want_sq += (i % 3) * rank_sum * (i % 3) * rank_sum;
        }
    }
    EXPECT_NEAR(global_grad_norm(registry, world), std::sqrt(want_sq), 1e-12 * std::sqrt(want_sq));
}

TEST(OptimMpi, StepsMatchTheOneRankComputationBitForBitAcrossRanks) {
    mpi::Comm world(MPI_COMM_WORLD);
    OptimModel model(&world, world.rank(), world.size());
    OptimModel whole(nullptr, 0, 1);  // every token and every expert on this rank alone
    const AdamWConfig config(0.9, 0.95, 1e-8, 0.1);
    AdamW adamw(model.registry, config), adamw_whole(whole.registry, config);
    const LrSchedule schedule(1e-2, 1e-3, 2, 6);
    for (int step = 0; step < 6; ++step) {
        model.refill_grads(world.rank(), world.size(), step);
        whole.refill_grads(0, 1, step);
        allreduce_gradients(model.registry, 300);
        const double norm = clip_grad_norm(model.registry, world, 40.0);
        const double whole_norm = std::sqrt(grad_sq_share(whole.registry));
        clip_gradients(whole.registry, whole_norm, 40.0);
        EXPECT_NEAR(norm, whole_norm, 1e-12 * norm) << "step " << step;
        adamw.step(model.registry, schedule.at(step));
        adamw_whole.step(whole.registry, schedule.at(step));
    }
    std::vector<float> replicated, lo, hi;  // every replicated element, then its min and max over the ranks
    for (size_t k = 0; k < kReplicatedSizes.size(); ++k) {
        replicated.insert(replicated.end(), model.values[k].begin(), model.values[k].end());
        for (int i = 0; i < kReplicatedSizes[k]; ++i)
            ASSERT_NEAR(model.values[k][i], whole.values[k][i], 1e-6) << "tensor " << k << " element " << i;
    }
    lo = hi = replicated;
    mpi::allreduce(world, std::span<float>(lo), mpi::Op::kMin);
    mpi::allreduce(world, std::span<float>(hi), mpi::Op::kMax);
    EXPECT_EQ(lo, replicated);
    EXPECT_EQ(hi, replicated);
    for (size_t j = kReplicatedSizes.size(); j < model.values.size(); ++j) {
        const int e = world.rank() + static_cast<int>(j - kReplicatedSizes.size()) * world.size();
        for (int i = 0; i < kExpertSize; ++i)
            ASSERT_NEAR(model.values[j][i], whole.values[kReplicatedSizes.size() + e][i], 1e-6) << "expert " << e;
    }
}

}  // namespace
}  // namespace epmoe
