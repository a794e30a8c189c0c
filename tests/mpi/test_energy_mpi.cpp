// HostEnergy at 1-4 ranks on one host: the host's joules are read once, counted once, and shared among
// the host's ranks by busy time; errors reach every rank.
#include <gtest/gtest.h>

#include <memory>
#include <numeric>

#include "../unit/energy/test_energy_fixture.hpp"
#include "epmoe/comm/mpi.hpp"
#include "epmoe/energy/energy.hpp"

namespace epmoe {
namespace {

using test::fixture_energy_config;
using test::SysfsCopy;

// A copy of a fixture tree made by world rank 0 (the host's reader), its root known to every rank.
struct SharedTree {
    std::unique_ptr<SysfsCopy> copy;  // rank 0 only
    std::string root;
    SharedTree(const mpi::Comm& world, const std::string& name) {
        if (world.rank() == 0) copy = std::make_unique<SysfsCopy>(name);
        root = mpi::allgather_strings(world, copy ? copy->root() : "")[0];
    }
    EnergyConfig config(const std::string& source, double sample_hz = 0) const {
        return fixture_energy_config(root, source, sample_hz);
    }
};

double sum_over(const mpi::Comm& world, double x) { return mpi::allreduce_one(world, x, mpi::Op::kSum); }

TEST(HostEnergyMpi, RaplCountedOnceAndSharedByBusyTime) {
    mpi::Comm world(MPI_COMM_WORLD);
    SharedTree tree(world, "amd-zen");
    HostEnergy energy(world, tree.config("auto", 50.0));
    EXPECT_EQ(energy.source(), "rapl");
    EXPECT_EQ(energy.num_hosts(), 1);
    EXPECT_EQ(energy.host_ranks(), world.size());
    EXPECT_EQ(energy.is_reader(), world.rank() == 0);

    // Step 1: package-0 +1.234567 J, package-1 wraps at AMD's range (+0.5 J); the core sub-zone is ignored.
    int64_t expect_uj = 0;
    mpi::barrier(world);
    if (tree.copy) {
        expect_uj += tree.copy->advance_zone("intel-rapl:0", 1'234'567);
        expect_uj += tree.copy->advance_zone("intel-rapl:1", 65532610987 - 1000 + 500);  // 1000 -> 500 uJ
        tree.copy->advance_zone("intel-rapl:0:0", 7'000'000);
    }
    mpi::barrier(world);
    expect_uj = mpi::allreduce_one<int64_t>(world, expect_uj, mpi::Op::kSum);
    const double expect = static_cast<double>(expect_uj) * 1e-6;
    double busy = world.rank() + 1.0;  // rank r is busy r+1 seconds
    StepEnergy s = energy.step(busy, {});
    // The host's joules are on its reader rank alone (one entry per host in metrics.jsonl); every rank has its share.
    const bool reader = world.split_shared().rank() == 0;
    EXPECT_EQ(s.host_joules.has_value(), reader);
    ASSERT_TRUE(s.rank_joules.has_value());
    if (reader) EXPECT_NEAR(s.host_joules.value_or(0), expect, 1e-9 * expect);
    double total_busy = world.size() * (world.size() + 1) / 2.0;
    EXPECT_NEAR(*s.rank_joules, expect * busy / total_busy, 1e-9 * expect);
    EXPECT_NEAR(sum_over(world, *s.rank_joules), expect, 1e-9 * expect);  // once, not size() times
    ASSERT_TRUE(s.host_temp_c.has_value());
    EXPECT_DOUBLE_EQ(*s.host_temp_c, 48.25);

    // Step 2: a small increment; nobody busy -> equal shares.
    mpi::barrier(world);
    if (tree.copy) tree.copy->advance_zone("intel-rapl:0", 300'000);
    mpi::barrier(world);
    s = energy.step(0.0, {});
    // Joules are differences of running totals near 65 kJ (double ulp ~7e-12 J): exact to a nanojoule.
    if (reader) EXPECT_NEAR(s.host_joules.value_or(0), 0.3, 1e-9);
    EXPECT_NEAR(*s.rank_joules, 0.3 / world.size(), 1e-9);
    EXPECT_NEAR(sum_over(world, *s.rank_joules), 0.3, 1e-9);

    // Step 3: nothing happened.
    s = energy.step(1.0, {});
    if (reader) EXPECT_EQ(s.host_joules.value_or(-1), 0.0);
}

TEST(HostEnergyMpi, EstimatedSumsTheHostsWorkOnce) {
    mpi::Comm world(MPI_COMM_WORLD);
    SharedTree tree(world, "nothing");
    HostEnergy energy(world, tree.config("auto"));
    EXPECT_EQ(energy.source(), "estimated");
    EXPECT_NE(energy.reason().find("using estimated"), std::string::npos) << energy.reason();
    double r = world.rank();
    WorkCounters mine{1e9 * (r + 1), 1e8 * (r + 1), 2.0};
    StepEnergy s = energy.step(1.0, mine);
    double n = world.size();
    double flops = 1e9 * n * (n + 1) / 2, bytes = 1e8 * n * (n + 1) / 2, core_s = 2.0 * n;
    double expect = (30.0 * flops + 150.0 * bytes) * 1e-12 + 3.0 * core_s;
    const bool reader = world.split_shared().rank() == 0;
    EXPECT_EQ(s.host_joules.has_value(), reader);
    if (reader) EXPECT_NEAR(s.host_joules.value_or(0), expect, 1e-12 * expect);
    EXPECT_NEAR(sum_over(world, s.rank_joules.value_or(0)), expect, 1e-9 * expect);
    // The next step's joules are that step's work only.
    s = energy.step(1.0, {0, 0, 1.0});
    if (reader) EXPECT_NEAR(s.host_joules.value_or(0), 3.0 * n, 1e-9);
}

TEST(HostEnergyMpi, NoneMeasuresNothing) {
    mpi::Comm world(MPI_COMM_WORLD);
    SharedTree tree(world, "intel-2s");
    HostEnergy energy(world, tree.config("none"));
    EXPECT_EQ(energy.source(), "none");
    StepEnergy s = energy.step(1.0, {1e9, 1e9, 1.0});
    EXPECT_FALSE(s.rank_joules || s.host_joules || s.host_power_w || s.host_temp_c);
}

TEST(HostEnergyMpi, UnreadableExplicitSourceFailsOnEveryRank) {
    mpi::Comm world(MPI_COMM_WORLD);
    SharedTree tree(world, "nothing");
    std::string message;
    try {
        HostEnergy energy(world, tree.config("rapl"));
    } catch (const AgreedError& e) {
        message = e.what();
    }
    EXPECT_NE(message.find(tree.root + "/class/powercap (no intel-rapl:* zones)"), std::string::npos) << message;
    // Every rank saw the same message.
    std::vector<std::string> all = mpi::allgather_strings(world, message);
    for (const auto& m : all) EXPECT_EQ(m, message);
}

TEST(HostEnergyMpi, AutoReasonIsSharedOnTheHost) {
    mpi::Comm world(MPI_COMM_WORLD);
    SharedTree tree(world, "hwmon-power");
    HostEnergy energy(world, tree.config("auto", 20.0));
    EXPECT_EQ(energy.source(), "hwmon");
    std::vector<std::string> all = mpi::allgather_strings(world, energy.reason());
    for (const auto& m : all) EXPECT_EQ(m, all[0]);
    EXPECT_NE(all[0].find("using hwmon"), std::string::npos) << all[0];
    StepEnergy s = energy.step(1.0, {});
    ASSERT_TRUE(s.host_power_w.has_value());
    EXPECT_NEAR(*s.host_power_w, 30.0, 1e-6);
}

}  // namespace
}  // namespace epmoe
