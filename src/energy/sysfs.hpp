// Internal to the energy sources: reading sysfs attributes with honest error reasons, finding RAPL zones
// and hwmon inputs, and a periodic sampler thread. Not part of the public API.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "epmoe/energy/energy.hpp"

namespace epmoe::energy_detail {

// The text of a small sysfs attribute, or why it could not be read.
struct TextRead {
    bool ok = false;
    std::string text;   // contents, trailing whitespace removed
    std::string error;  // "<path>: permission denied (EACCES)" when !ok
    int err = 0;        // errno of the failure, 0 if ok or the text was bad
};

// Reads one attribute with open/read so errno is reported as the kernel gave it.
TextRead read_text(const std::string& path);

// Reads a decimal integer attribute; error names the path and the reason (errno or "not an integer").
struct IntRead {
    bool ok = false;
    int64_t value = 0;
    std::string error;
    int err = 0;
};
IntRead read_int(const std::string& path);

// RAPL zones under <root>/class/powercap, sorted by package then sub-zone; `why` says why none were found.
std::vector<RaplZone> list_rapl_zones(const std::string& root, std::string* why);

// hwmon devices under <root>/class/hwmon, sorted by N; `why` says why none were found.
std::vector<HwmonDevice> list_hwmon_devices(const std::string& root, std::string* why);

// Seconds on a monotonic clock.
double now_s();

// Runs fn every 1/hz seconds in a thread until destroyed; hz <= 0 starts no thread. fn must not throw.
class PeriodicSampler {
public:
    PeriodicSampler(double hz, std::function<void()> fn);
    ~PeriodicSampler();
    PeriodicSampler(const PeriodicSampler&) = delete;
    PeriodicSampler& operator=(const PeriodicSampler&) = delete;

private:
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stop_ = false;
    std::thread thread_;
};

// Average power between successive readings of a joule counter.
class PowerMeter {
public:
    // start: the time the counter's joules were zero, s on the now_s() clock.
    explicit PowerMeter(double start = now_s()) : last_time_(start) {}
    // Watts since the previous update (or construction), given the counter's joules at time now_s;
    // nullopt when no time has passed.
    std::optional<double> update(double joules, double now);

private:
    double last_joules_ = 0;
    double last_time_;
};

// For sampler threads: runs poll, keeping the first error in *error for the next read() to report.
// Does nothing once an error is kept.
void poll_keeping_error(std::string* error, const std::function<void()>& poll);

// The hottest readable temperature input over all hwmon devices (deg C), or nullopt.
class TempReader {
public:
    explicit TempReader(const std::string& root);
    std::optional<double> max_c() const;

private:
    std::vector<std::string> paths_;  // tempN_input files that were readable at opening
};

// Factories of the concrete sources; they fail with Error naming the path when unusable.
std::unique_ptr<EnergySource> open_rapl(const EnergyConfig& config);
std::unique_ptr<EnergySource> open_hwmon(const EnergyConfig& config);

}  // namespace epmoe::energy_detail
