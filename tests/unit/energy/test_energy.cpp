// Choosing a source (src/energy/energy.cpp): auto's fallbacks and reasons, estimated, none, and the errors of
// explicit sources (missing zones, a read error, and EACCES from a process without root).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "epmoe/base/error.hpp"
#include "epmoe/energy/energy.hpp"
#include "test_energy_fixture.hpp"

namespace epmoe {
namespace {

using test::SysfsCopy;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string open_error(const EnergyConfig& config) {
    try {
        open_energy_source(config, nullptr);
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

TEST(EnergyChoice, AutoPrefersRaplThenHwmonThenEstimated) {
    SysfsCopy intel("intel-2s"), power("hwmon-power"), nothing("nothing");
    std::string reason;
    EXPECT_STREQ(open_energy_source(intel.config("auto"), &reason)->name(), "rapl");
    EXPECT_TRUE(contains(reason, "(package-0, dram, package-1, dram); using rapl")) << reason;

    EXPECT_STREQ(open_energy_source(power.config("auto"), &reason)->name(), "hwmon");
    EXPECT_TRUE(contains(reason, "no readable RAPL under " + power.root() + "/class/powercap")) << reason;
    EXPECT_TRUE(contains(reason, "'CPU power'")) << reason;
    EXPECT_TRUE(contains(reason, "using hwmon")) << reason;

    EXPECT_STREQ(open_energy_source(nothing.config("auto"), &reason)->name(), "estimated");
    EXPECT_EQ(reason, "no readable RAPL under " + nothing.root() + "/class/powercap (no intel-rapl:* zones); " +
                          "no hwmon energy or power sensors under " + nothing.root() +
                          "/class/hwmon (1 devices, temperature only); using estimated");
}

TEST(EnergyChoice, EstimatedFollowsItsCoefficients) {
    SysfsCopy nothing("nothing");
    EnergyConfig config = nothing.config("estimated");
    config.estimate = {20.0, 100.0, 2.5};
    auto source = open_energy_source(config, nullptr);
    ASSERT_NE(source, nullptr);
    EXPECT_STREQ(source->name(), "estimated");
    EnergyReading r = source->read({4e12, 2e10, 8.0});  // 4 TFLOP, 20 GB, 8 core-seconds
    EXPECT_DOUBLE_EQ(r.joules, 20.0 * 4 + 100.0 * 0.02 + 2.5 * 8);
    ASSERT_TRUE(r.temp_c.has_value());
    EXPECT_DOUBLE_EQ(*r.temp_c, 38.85);
}

TEST(EnergyChoice, NoneOpensNothing) {
    SysfsCopy intel("intel-2s");
    std::string reason;
    EXPECT_EQ(open_energy_source(intel.config("none"), &reason), nullptr);
    EXPECT_EQ(reason, "energy.source = none");
}

TEST(EnergyChoice, ExplicitSourcesOnAnEmptyMachineFailNamingThePath) {
    SysfsCopy nothing("nothing");
    std::string rapl = open_error(nothing.config("rapl"));
    EXPECT_TRUE(contains(rapl, "energy.source = rapl")) << rapl;
    EXPECT_TRUE(contains(rapl, nothing.root() + "/class/powercap (no intel-rapl:* zones)")) << rapl;
    std::string hwmon = open_error(nothing.config("hwmon"));
    EXPECT_TRUE(contains(hwmon, nothing.root() + "/class/hwmon")) << hwmon;
    EnergyConfig elsewhere = nothing.config("rapl");
    elsewhere.sysfs_root = nothing.root() + "/no-such-root";
    std::string missing = open_error(elsewhere);
    EXPECT_TRUE(contains(missing, "no directory " + nothing.root() + "/no-such-root/class/powercap")) << missing;
}

TEST(EnergyChoice, ReadErrorNamesTheFileAndAutoFallsBack) {
    SysfsCopy tree("intel-2s");
    std::string energy = tree.path("class/powercap/intel-rapl:1/energy_uj");
    std::filesystem::remove(energy);
    std::filesystem::create_directory(energy);  // read(2) now fails with EISDIR
    std::string err = open_error(tree.config("rapl"));
    EXPECT_TRUE(contains(err, energy + ": is a directory")) << err;
    EXPECT_TRUE(contains(err, "EISDIR")) << err;
    std::string reason;
    EXPECT_STREQ(open_energy_source(tree.config("auto"), &reason)->name(), "estimated");
    EXPECT_TRUE(contains(reason, energy)) << reason;
    // A counter that becomes unreadable after opening fails the read, naming the file.
    SysfsCopy later("amd-zen");
    auto source = open_energy_source(later.config("rapl"), nullptr);
    std::filesystem::remove(later.path("class/powercap/intel-rapl:0/energy_uj"));
    try {
        source->read({});
        FAIL() << "expected Error";
    } catch (const Error& e) {
        EXPECT_TRUE(contains(e.what(), "intel-rapl:0/energy_uj: no such file")) << e.what();
    }
}

// energy_uj is 0400 root since Linux 5.10. Root ignores file modes, so the check runs in a forked child
// that drops to nobody (65534) when the test runs as root; otherwise the file is made unreadable.
TEST(EnergyChoice, PermissionDeniedIsSaidExplicitly) {
    SysfsCopy tree("intel-2s");
    std::string energy = tree.path("class/powercap/intel-rapl:0/energy_uj");
    ASSERT_EQ(::chmod(energy.c_str(), geteuid() == 0 ? 0400 : 0000), 0);
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ::close(fds[0]);
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);
        std::string message = open_error(tree.config("rapl"));
        ssize_t n = ::write(fds[1], message.data(), message.size());
        _exit(n == static_cast<ssize_t>(message.size()) ? 0 : 4);
    }
    ::close(fds[1]);
    std::string message;
    char buf[512];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof(buf))) > 0;) message.append(buf, static_cast<size_t>(n));
    ::close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
    EXPECT_TRUE(contains(message, energy + ": permission denied (EACCES)")) << message;
    EXPECT_TRUE(contains(message, "readable only by root")) << message;
}

}  // namespace
}  // namespace epmoe
