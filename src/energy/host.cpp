// HostEnergy: one reader per host, the host's joules counted once and shared among its ranks by busy time.
#include <array>
#include <cmath>
#include <limits>

#include "epmoe/base/error.hpp"
#include "epmoe/energy/energy.hpp"

namespace epmoe {
namespace {

constexpr double kAbsent = std::numeric_limits<double>::quiet_NaN();

std::optional<double> present(double x) { return std::isnan(x) ? std::nullopt : std::optional<double>(x); }

// The best source every host can read under `auto`: rapl if all can, else hwmon if all can, else estimated.
// can[0] / can[1]: this host can read rapl / hwmon (ranks that are not readers pass 1, 1).
std::string agree_on_auto(const mpi::Comm& world, std::array<int32_t, 2> can) {
    mpi::allreduce(world, std::span<int32_t>(can), mpi::Op::kMin);
    return can[0] ? "rapl" : can[1] ? "hwmon" : "estimated";
}

}  // namespace

HostEnergy::HostEnergy(const mpi::Comm& world, const EnergyConfig& config)
    : world_(world.raw()), host_(world_.split_shared()) {
    bool reader = host_.rank() == 0;
    num_hosts_ = mpi::allreduce_one<int32_t>(world_, reader ? 1 : 0, mpi::Op::kSum);
    EnergyConfig resolved = config;
    std::string local_reason;
    if (config.source == "auto") {
        EnergyProbe probe;
        std::array<int32_t, 2> can{1, 1};
        mpi::all_or_none(world_, [&] {
            if (!reader) return;
            probe = probe_energy(config.sysfs_root);
            can = {probe.rapl_usable ? 1 : 0, probe.hwmon_usable ? 1 : 0};
        });
        resolved.source = agree_on_auto(world_, can);
        local_reason = probe.auto_reason;
        if (reader && resolved.source != probe.auto_choice)
            local_reason +=
                cat("; another host cannot read ", probe.auto_choice, ", so every host uses ", resolved.source);
    }
    source_name_ = resolved.source;
    mpi::all_or_none(world_, [&] {
        if (!reader) return;
        std::string why;
        source_ = open_energy_source(resolved, &why);
        if (config.source != "auto") local_reason = why;
    });
    reason_ = mpi::allgather_strings(host_, local_reason)[0];
}

StepEnergy HostEnergy::step(double busy_s, const WorkCounters& work) {
    StepEnergy out;
    if (source_name_ == "none") return out;  // same on every rank: no collective, nothing measured
    // [busy_s, flops, bytes, seconds] summed over the host's ranks.
    std::array<double, 4> sums{busy_s, work.flops, work.bytes, work.seconds};
    mpi::allreduce(host_, std::span<double>(sums), mpi::Op::kSum);
    // [host joules in the step, power W, temperature C] from the reader; NaN = not measured.
    std::array<double, 3> host{kAbsent, kAbsent, kAbsent};
    mpi::all_or_none(world_, [&] {
        if (host_.rank() != 0) return;
        host_work_.flops += sums[1];
        host_work_.bytes += sums[2];
        host_work_.seconds += sums[3];
        EnergyReading r = source_->read(host_work_);
        host = {r.joules - last_joules_, r.power_w.value_or(kAbsent), r.temp_c.value_or(kAbsent)};
        last_joules_ = r.joules;
    });
    mpi::bcast(host_, std::span<double>(host), 0);
    if (host_.rank() == 0) out.host_joules = host[0];  // once per host: the reader's record carries it
    out.host_power_w = present(host[1]);
    out.host_temp_c = present(host[2]);
    double share = sums[0] > 0 ? busy_s / sums[0] : 1.0 / host_.size();
    out.rank_joules = host[0] * share;
    return out;
}

}  // namespace epmoe
