// The rapl source on fake powercap trees: which zones are summed, wraparound, several packages, AMD.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "epmoe/energy/energy.hpp"
#include "test_energy_fixture.hpp"

namespace epmoe {
namespace {

using test::SysfsCopy;

double uj(int64_t micro) { return static_cast<double>(micro) * 1e-6; }

TEST(EnergyRapl, ProbeCountsPackagesAndDramOnly) {
    SysfsCopy tree("intel-2s");
    EnergyProbe p = probe_energy(tree.root());
    ASSERT_EQ(p.rapl.size(), 9u);
    std::vector<std::string> counted, names;
    for (const auto& z : p.rapl) {
        names.push_back(z.zone + "=" + z.name);
        EXPECT_TRUE(z.readable) << z.zone << ": " << z.error;
        if (z.counted) counted.push_back(z.name);
    }
    EXPECT_EQ(names, (std::vector<std::string>{"intel-rapl:0=package-0", "intel-rapl:0:0=core", "intel-rapl:0:1=uncore",
                                               "intel-rapl:0:2=dram", "intel-rapl:1=package-1", "intel-rapl:1:0=core",
                                               "intel-rapl:1:1=uncore", "intel-rapl:1:2=dram", "intel-rapl:2=psys"}));
    EXPECT_EQ(counted, (std::vector<std::string>{"package-0", "dram", "package-1", "dram"}));
    EXPECT_TRUE(p.rapl_usable);
    EXPECT_EQ(p.auto_choice, "rapl");
}

TEST(EnergyRapl, IntelTwoSocketSumsOnceAndUnwraps) {
    SysfsCopy tree("intel-2s");
    std::string reason;
    auto source = open_energy_source(tree.config("rapl"), &reason);
    ASSERT_NE(source, nullptr);
    EXPECT_STREQ(source->name(), "rapl");
    EXPECT_EQ(source->read({}).joules, 0.0);

    int64_t expect = 0;
    expect += tree.advance_zone("intel-rapl:0", 1'500'000);
    expect += tree.advance_zone("intel-rapl:0:2", 250'001);
    // package-1 sits at 90000123456 uJ; this step carries it past 262143328850 and back to a small value.
    int64_t to_wrap = 262143328850 - tree.value("class/powercap/intel-rapl:1/energy_uj");
    expect += tree.advance_zone("intel-rapl:1", to_wrap + 777);
    EXPECT_EQ(tree.value("class/powercap/intel-rapl:1/energy_uj"), 777);
    expect += tree.advance_zone("intel-rapl:1:2", 3);
    // Inside the packages, or the whole platform: never added.
    tree.advance_zone("intel-rapl:0:0", 900'000);
    tree.advance_zone("intel-rapl:1:1", 400'000);
    tree.advance_zone("intel-rapl:2", 9'999'999);

    EnergyReading r = source->read({});
    EXPECT_DOUBLE_EQ(r.joules, uj(expect));
    ASSERT_TRUE(r.power_w.has_value());
    EXPECT_GT(*r.power_w, 0.0);
    ASSERT_TRUE(r.temp_c.has_value());
    EXPECT_DOUBLE_EQ(*r.temp_c, 51.0);  // coretemp "Package id 1"

    // Cumulative over reads; a dram counter wraps too (its own, smaller range).
    expect +=
        tree.advance_zone("intel-rapl:0:2", 65712999613 - tree.value("class/powercap/intel-rapl:0:2/energy_uj") + 5);
    expect += tree.advance_zone("intel-rapl:0", 42);
    EXPECT_DOUBLE_EQ(source->read({}).joules, uj(expect));
    EXPECT_DOUBLE_EQ(source->read({}).joules, uj(expect));  // nothing changed: nothing added
}

TEST(EnergyRapl, AmdPackagesWithAmdRange) {
    SysfsCopy tree("amd-zen");
    EnergyProbe p = probe_energy(tree.root());
    ASSERT_EQ(p.rapl.size(), 4u);
    EXPECT_EQ(p.auto_choice, "rapl");
    EXPECT_NE(p.auto_reason.find("package-0, package-1"), std::string::npos) << p.auto_reason;
    auto source = open_energy_source(tree.config("auto"), nullptr);
    ASSERT_NE(source, nullptr);
    EXPECT_STREQ(source->name(), "rapl");
    source->read({});
    int64_t expect = tree.advance_zone("intel-rapl:0", 12'345'678);
    // package-1 is at 1000 uJ: wrap at AMD's 65532610987 uJ range.
    expect += tree.advance_zone("intel-rapl:1", 65532610987 - 1000 + 250);
    EXPECT_EQ(tree.value("class/powercap/intel-rapl:1/energy_uj"), 250);
    tree.advance_zone("intel-rapl:0:0", 5'000'000);  // core: inside package-0
    EnergyReading r = source->read({});
    EXPECT_DOUBLE_EQ(r.joules, uj(expect));
    ASSERT_TRUE(r.temp_c.has_value());
    EXPECT_DOUBLE_EQ(*r.temp_c, 48.25);
}

TEST(EnergyRapl, SamplerCatchesAWrapBetweenReads) {
    SysfsCopy tree("amd-zen");
    auto source = open_energy_source(tree.config("rapl", 200.0), nullptr);
    int64_t expect = 0;
    // Two steps before the next read: a wrap, then a climb back above the starting value. Only a sampler
    // that saw the middle value can count this right; a plain read would see +600 uJ.
    expect += tree.advance_zone("intel-rapl:1", 65532610987 - 1000 + 100);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    expect += tree.advance_zone("intel-rapl:1", 1500);
    EXPECT_EQ(tree.value("class/powercap/intel-rapl:1/energy_uj"), 1600);
    EXPECT_DOUBLE_EQ(source->read({}).joules, uj(expect));
}

}  // namespace
}  // namespace epmoe
