// The hwmon source on fake trees: energy counters (amd_energy), power integrated over time (X-Gene),
// temperatures (max over devices, also in the old device/ layout).
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "epmoe/energy/energy.hpp"
#include "test_energy_fixture.hpp"

namespace epmoe {
namespace {

using test::SysfsCopy;

double seconds_now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

TEST(EnergyHwmon, ProbeFindsEnergyCountersButNotPerCore) {
    SysfsCopy tree("hwmon-energy");
    EnergyProbe p = probe_energy(tree.root());
    EXPECT_FALSE(p.rapl_usable);
    EXPECT_TRUE(p.hwmon_usable);
    EXPECT_EQ(p.auto_choice, "hwmon");
    ASSERT_EQ(p.hwmon.size(), 2u);
    EXPECT_EQ(p.hwmon[1].name, "amd_energy");
    ASSERT_EQ(p.hwmon[1].inputs.size(), 5u);
    for (const auto& in : p.hwmon[1].inputs) {
        EXPECT_EQ(in.kind, "energy");
        EXPECT_EQ(in.counted, in.label == "Esocket0") << in.input << " " << in.label;
    }
}

TEST(EnergyHwmon, EnergyCountersExact) {
    SysfsCopy tree("hwmon-energy");
    auto source = open_energy_source(tree.config("hwmon"), nullptr);
    ASSERT_NE(source, nullptr);
    EXPECT_STREQ(source->name(), "hwmon");
    std::string socket = "class/hwmon/hwmon1/energy5_input";
    int64_t start = tree.value(socket);
    tree.write(socket, start + 2'000'003);
    tree.write("class/hwmon/hwmon1/energy2_input", 99'000'000);  // Ecore001: inside Esocket0
    EnergyReading r = source->read({});
    EXPECT_DOUBLE_EQ(r.joules, 2.000003);
    ASSERT_TRUE(r.temp_c.has_value());
    EXPECT_DOUBLE_EQ(*r.temp_c, 55.125);
    // A counter that goes backwards was reset (driver reload): nothing is subtracted, counting resumes.
    tree.write(socket, 10);
    EXPECT_DOUBLE_EQ(source->read({}).joules, 2.000003);
    tree.write(socket, 1'000'010);
    EXPECT_DOUBLE_EQ(source->read({}).joules, 3.000003);
}

// Constant power P: the trapezoid integral is exactly P x (time of last sample - time of opening), and both
// times lie inside windows the test measures.
void check_constant_power(double sample_hz) {
    SysfsCopy tree("hwmon-power");
    double before_open = seconds_now();
    auto source = open_energy_source(tree.config("hwmon", sample_hz), nullptr);
    double after_open = seconds_now();
    ASSERT_NE(source, nullptr);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    double before_read = seconds_now();
    EnergyReading r = source->read({});
    double after_read = seconds_now();
    const double watts = 23.5 + 6.5;  // CPU power + IO power
    EXPECT_GE(r.joules, watts * (before_read - after_open) - 1e-9);
    EXPECT_LE(r.joules, watts * (after_read - before_open) + 1e-9);
    ASSERT_TRUE(r.power_w.has_value());
    EXPECT_NEAR(*r.power_w, watts, 1e-6);
    ASSERT_TRUE(r.temp_c.has_value());
    EXPECT_DOUBLE_EQ(*r.temp_c, 61.5);  // the lm75 whose attributes sit in hwmon1/device/
}

TEST(EnergyHwmon, PowerIntegratedAtReads) { check_constant_power(0); }
TEST(EnergyHwmon, PowerIntegratedBySampler) { check_constant_power(100); }

TEST(EnergyHwmon, PowerChangeIsIntegratedBetweenItsBounds) {
    SysfsCopy tree("hwmon-power");
    auto source = open_energy_source(tree.config("hwmon", 200), nullptr);
    double e0 = source->read({}).joules;
    tree.write("class/hwmon/hwmon0/power1_input", 3'500'000);  // 30 W -> 10 W
    double t0 = seconds_now();
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    double e1 = source->read({}).joules;
    double t1 = seconds_now();
    EXPECT_GE(e1 - e0, 0.0);
    EXPECT_LE(e1 - e0, 30.0 * (t1 - t0) + 30.0 * 0.05);  // 30 W for at most one sample period and slack
    EXPECT_GE(e1 - e0, 10.0 * 0.35);                     // at least 10 W for most of the 400 ms
}

TEST(EnergyHwmon, ExplicitHwmonWithOnlyTemperaturesFails) {
    SysfsCopy tree("intel-2s");
    try {
        open_energy_source(tree.config("hwmon"), nullptr);
        FAIL() << "expected Error";
    } catch (const Error& e) {
        std::string what = e.what();
        EXPECT_NE(what.find(tree.root() + "/class/hwmon"), std::string::npos) << what;
        EXPECT_NE(what.find("temperature only"), std::string::npos) << what;
    }
}

}  // namespace
}  // namespace epmoe
