// The `hwmon` source: energyN_input counters (uJ), else powerN_input (uW) integrated over time.
#include <mutex>

#include "epmoe/base/error.hpp"
#include "sysfs.hpp"

namespace epmoe::energy_detail {
namespace {

struct Counter {
    std::string path;  // energyN_input
    int64_t last_uj = 0;
    int64_t total_uj = 0;
};

class HwmonSource final : public EnergySource {
public:
    HwmonSource(std::vector<Counter> counters, std::vector<std::string> powers, const EnergyConfig& config)
        : counters_(std::move(counters)), power_paths_(std::move(powers)), temps_(config.sysfs_root) {
        sample_time_ = now_s();
        power_ = PowerMeter(sample_time_);
        last_power_w_ = power_now();
        sampler_ = std::make_unique<PeriodicSampler>(config.sample_hz, [this] { sample(); });
    }
    ~HwmonSource() override { sampler_.reset(); }  // stop the thread before the members it reads go

    const char* name() const override { return "hwmon"; }

    EnergyReading read(const WorkCounters&) override {
        std::lock_guard<std::mutex> lock(mutex_);
        poll();
        if (!sampler_error_.empty()) fail("energy source hwmon: ", sampler_error_);
        int64_t total = 0;
        for (const auto& c : counters_) total += c.total_uj;
        EnergyReading r;
        r.joules = static_cast<double>(total) * 1e-6 + integrated_j_;
        r.power_w = power_.update(r.joules, sample_time_);
        r.temp_c = temps_.max_c();
        return r;
    }

private:
    // Sum of the power inputs now, in W.
    double power_now() {
        int64_t uw = 0;
        for (const auto& p : power_paths_) {
            IntRead v = read_int(p);
            if (!v.ok) fail("energy source hwmon: ", v.error);
            uw += v.value;
        }
        return static_cast<double>(uw) * 1e-6;
    }

    // Reads every input once: counters advance (a drop is a reset: restart from the new value), and
    // power is integrated with the trapezoid rule since the previous sample.
    void poll() {
        for (auto& c : counters_) {
            IntRead v = read_int(c.path);
            if (!v.ok) fail("energy source hwmon: ", v.error);
            if (v.value >= c.last_uj) c.total_uj += v.value - c.last_uj;
            c.last_uj = v.value;
        }
        double now = now_s();
        if (!power_paths_.empty()) {
            double p = power_now();
            integrated_j_ += 0.5 * (p + last_power_w_) * (now - sample_time_);
            last_power_w_ = p;
        }
        sample_time_ = now;
    }

    void sample() {
        std::lock_guard<std::mutex> lock(mutex_);
        poll_keeping_error(&sampler_error_, [this] { poll(); });
    }

    std::mutex mutex_;
    std::vector<Counter> counters_;
    std::vector<std::string> power_paths_;  // powerN_input files, uW
    TempReader temps_;
    double integrated_j_ = 0;  // J from power inputs since opening
    double last_power_w_ = 0;  // power at the last sample, W
    double sample_time_ = 0;   // time of the last sample, s
    PowerMeter power_;
    std::string sampler_error_;
    std::unique_ptr<PeriodicSampler> sampler_;
};

}  // namespace

std::unique_ptr<EnergySource> open_hwmon(const EnergyConfig& config) {
    std::string why;
    std::vector<HwmonDevice> devices = list_hwmon_devices(config.sysfs_root, &why);
    std::string dir = config.sysfs_root + "/class/hwmon";
    if (devices.empty()) fail("energy.source = hwmon: no hwmon devices under ", dir, " (", why, ")");
    std::vector<Counter> counters;
    std::vector<std::string> powers;
    for (const auto& d : devices) {
        for (const auto& in : d.inputs) {
            if (!in.counted) continue;
            if (!in.readable) fail("energy.source = hwmon: ", in.error);
            std::string path = d.path + "/" + in.input;
            if (in.kind == "power") {
                powers.push_back(path);
            } else {
                counters.push_back({path, read_int(path).value, 0});
            }
        }
    }
    if (counters.empty() && powers.empty())
        fail("energy.source = hwmon: no energyN_input or powerN_input under ", dir, " (", devices.size(),
             " devices, temperature only)");
    return std::make_unique<HwmonSource>(std::move(counters), std::move(powers), config);
}

}  // namespace epmoe::energy_detail
