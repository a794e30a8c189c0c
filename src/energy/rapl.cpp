// The `rapl` source: powercap's intel-rapl zones (Intel, and AMD Zen through the same driver).
#include <mutex>

#include "epmoe/base/error.hpp"
#include "sysfs.hpp"

namespace epmoe::energy_detail {
namespace {

// One counted zone's energy_uj counter, unwrapped into a running total.
struct Domain {
    std::string energy_path;  // .../energy_uj
    int64_t max_uj = 0;       // max_energy_range_uj: the counter wraps to 0 past this
    int64_t last_uj = 0;      // the last raw value read
    int64_t total_uj = 0;     // uJ since opening
};

class RaplSource final : public EnergySource {
public:
    RaplSource(std::vector<Domain> domains, const EnergyConfig& config)
        : domains_(std::move(domains)), temps_(config.sysfs_root), sampler_(config.sample_hz, [this] { sample(); }) {}

    const char* name() const override { return "rapl"; }

    EnergyReading read(const WorkCounters&) override {
        std::lock_guard<std::mutex> lock(mutex_);
        poll();
        if (!sampler_error_.empty()) fail("energy source rapl: ", sampler_error_);
        int64_t total = 0;
        for (const auto& d : domains_) total += d.total_uj;
        EnergyReading r;
        r.joules = static_cast<double>(total) * 1e-6;
        r.power_w = power_.update(r.joules, now_s());
        r.temp_c = temps_.max_c();
        return r;
    }

private:
    // Reads every counter once; a value below the last one means the counter wrapped once.
    void poll() {
        for (auto& d : domains_) {
            IntRead v = read_int(d.energy_path);
            if (!v.ok) fail("energy source rapl: ", v.error);
            if (v.value < 0 || v.value > d.max_uj)
                fail("energy source rapl: ", d.energy_path, " = ", v.value, " is outside [0, max_energy_range_uj ",
                     d.max_uj, "]");
            d.total_uj += v.value >= d.last_uj ? v.value - d.last_uj : (d.max_uj - d.last_uj) + v.value;
            d.last_uj = v.value;
        }
    }

    // Sampler thread: catches wraps that happen between two read() calls. Errors wait for read().
    void sample() {
        std::lock_guard<std::mutex> lock(mutex_);
        poll_keeping_error(&sampler_error_, [this] { poll(); });
    }

    std::mutex mutex_;
    std::vector<Domain> domains_;
    TempReader temps_;
    PowerMeter power_;
    std::string sampler_error_;
    PeriodicSampler sampler_;  // last: stopped before the members it reads are destroyed
};

}  // namespace

std::unique_ptr<EnergySource> open_rapl(const EnergyConfig& config) {
    std::string why;
    std::vector<RaplZone> zones = list_rapl_zones(config.sysfs_root, &why);
    std::string dir = config.sysfs_root + "/class/powercap";
    if (zones.empty()) fail("energy.source = rapl: no readable RAPL under ", dir, " (", why, ")");
    std::vector<Domain> domains;
    bool has_package = false;
    for (const auto& z : zones) {
        if (!z.counted) continue;
        if (!z.readable) fail("energy.source = rapl: ", z.error);
        has_package = has_package || z.name.rfind("package", 0) == 0;
        Domain d;
        d.energy_path = z.path + "/energy_uj";
        d.max_uj = read_int(z.path + "/max_energy_range_uj").value;
        IntRead first = read_int(d.energy_path);
        if (!first.ok) fail("energy.source = rapl: ", first.error);
        d.last_uj = first.value;
        domains.push_back(d);
    }
    if (!has_package) fail("energy.source = rapl: no package-N zone under ", dir, " (zones: ", zones.size(), ")");
    return std::make_unique<RaplSource>(std::move(domains), config);
}

}  // namespace epmoe::energy_detail
