// Choosing an energy source (`auto` and the explicit names), the `estimated` source, and the probe that
// `epmoe info` prints.
#include "epmoe/energy/energy.hpp"

#include "epmoe/base/error.hpp"
#include "sysfs.hpp"

namespace epmoe {

EnergySource::~EnergySource() = default;

namespace {

using namespace energy_detail;

// joules = pJ/FLOP x FLOPs + pJ/byte x bytes + idle W/core x core-seconds. Always labelled `estimated`.
class EstimatedSource final : public EnergySource {
public:
    explicit EstimatedSource(const EnergyConfig& config) : coeff_(config.estimate), temps_(config.sysfs_root) {}

    const char* name() const override { return "estimated"; }

    EnergyReading read(const WorkCounters& w) override {
        EnergyReading r;
        r.joules =
            (coeff_.pj_per_flop * w.flops + coeff_.pj_per_byte * w.bytes) * 1e-12 + coeff_.idle_w_per_core * w.seconds;
        r.power_w = power_.update(r.joules, now_s());
        r.temp_c = temps_.max_c();
        return r;
    }

private:
    EnergyEstimate coeff_;
    TempReader temps_;
    PowerMeter power_;
};

std::string join_names(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out;
}

void judge_rapl(EnergyProbe& p) {
    std::string dir = p.sysfs_root + "/class/powercap";
    std::string why;
    p.rapl = list_rapl_zones(p.sysfs_root, &why);
    std::vector<std::string> counted;
    bool has_package = false;
    for (const auto& z : p.rapl) {
        if (!z.counted) continue;
        if (!z.readable) {
            p.rapl_why = cat("no readable RAPL under ", dir, " (", z.error, ")");
            return;
        }
        counted.push_back(z.name);
        has_package = has_package || z.name.rfind("package", 0) == 0;
    }
    if (p.rapl.empty()) {
        p.rapl_why = cat("no readable RAPL under ", dir, " (", why, ")");
    } else if (!has_package) {
        p.rapl_why = cat("no readable RAPL under ", dir, " (no package-N zone among ", p.rapl.size(), " zones)");
    } else {
        p.rapl_usable = true;
        p.rapl_why = cat("RAPL readable under ", dir, " (", join_names(counted), ")");
    }
}

void judge_hwmon(EnergyProbe& p) {
    std::string dir = p.sysfs_root + "/class/hwmon";
    std::string why;
    p.hwmon = list_hwmon_devices(p.sysfs_root, &why);
    std::vector<std::string> counted;
    for (const auto& d : p.hwmon) {
        for (const auto& in : d.inputs) {
            if (!in.counted) continue;
            if (!in.readable) {
                p.hwmon_why = cat("hwmon ", in.kind, " sensor unreadable (", in.error, ")");
                return;
            }
            counted.push_back(cat(d.name, "/", in.input, in.label.empty() ? "" : " '" + in.label + "'"));
        }
    }
    if (p.hwmon.empty()) {
        p.hwmon_why = cat("no hwmon energy or power sensors under ", dir, " (", why, ")");
    } else if (counted.empty()) {
        p.hwmon_why =
            cat("no hwmon energy or power sensors under ", dir, " (", p.hwmon.size(), " devices, temperature only)");
    } else {
        p.hwmon_usable = true;
        p.hwmon_why = cat("hwmon readable under ", dir, " (", join_names(counted), ")");
    }
}

std::unique_ptr<EnergySource> open_named(const std::string& name, const EnergyConfig& config) {
    if (name == "rapl") return open_rapl(config);
    if (name == "hwmon") return open_hwmon(config);
    if (name == "estimated") return std::make_unique<EstimatedSource>(config);
    if (name == "none") return nullptr;
    fail("energy.source = ", name, ": unknown (auto, rapl, hwmon, estimated or none)");
}

}  // namespace

EnergyProbe probe_energy(const std::string& sysfs_root) {
    EnergyProbe p;
    p.sysfs_root = sysfs_root;
    judge_rapl(p);
    judge_hwmon(p);
    if (p.rapl_usable) {
        p.auto_choice = "rapl";
        p.auto_reason = p.rapl_why + "; using rapl";
    } else if (p.hwmon_usable) {
        p.auto_choice = "hwmon";
        p.auto_reason = cat(p.rapl_why, "; ", p.hwmon_why, "; using hwmon");
    } else {
        p.auto_choice = "estimated";
        p.auto_reason = cat(p.rapl_why, "; ", p.hwmon_why, "; using estimated");
    }
    return p;
}

std::unique_ptr<EnergySource> open_energy_source(const EnergyConfig& config, std::string* reason) {
    std::string name = config.source;
    std::string why = cat("energy.source = ", name);
    if (name == "auto") {
        EnergyProbe p = probe_energy(config.sysfs_root);
        name = p.auto_choice;
        why = p.auto_reason;
    } else if (name == "estimated") {
        why += " (a model: pJ/FLOP x FLOPs + pJ/byte x bytes + idle W/core x core-seconds)";
    }
    auto source = open_named(name, config);
    if (reason != nullptr) *reason = why;
    return source;
}

}  // namespace epmoe
