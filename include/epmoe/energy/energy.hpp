// Energy: where joules come from (RAPL through powercap, hwmon, an estimate, or none), and how a host's
// joules are shared among its ranks. Sources are pure file reading; only HostEnergy talks MPI.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "epmoe/base/config.hpp"
#include "epmoe/comm/mpi.hpp"

namespace epmoe {

// Work done since a source was opened; the `estimated` source turns it into joules.
struct WorkCounters {
    double flops = 0;    // floating-point operations
    double bytes = 0;    // bytes moved (memory and network traffic the caller counts)
    double seconds = 0;  // core-seconds: wall seconds x cores kept busy or idle (one per single-threaded rank)
};

// One reading of a source. Absent fields were not measured (never made up).
struct EnergyReading {
    double joules = 0;              // J since the source was opened (wraparound handled)
    std::optional<double> power_w;  // W, average since the previous read() (or since opening)
    std::optional<double> temp_c;   // deg C, hottest hwmon temperature input, where one is readable
};

// A source of joules for one host. Not thread-safe across callers; sources may sample in a thread.
class EnergySource {
public:
    virtual ~EnergySource();
    // "rapl", "hwmon" or "estimated".
    virtual const char* name() const = 0;
    // Joules since opening. `since_start` is the work since opening (used by `estimated` only).
    // Fails with Error naming the file when a counter stops being readable.
    virtual EnergyReading read(const WorkCounters& since_start) = 0;
};

// Opens config.source under config.sysfs_root: "rapl", "hwmon", "estimated", "auto" (RAPL, then hwmon,
// then estimated) or "none" (returns nullptr). Sets *reason (if given) to one line saying why.
// An explicitly asked-for source that is unreadable fails with Error naming the path and the reason.
// rapl sums package-N and dram zones (never core/uncore inside them, never psys); hwmon sums energyN_input
// (not amd_energy's per-core Ecore*), and integrates powerN_input on devices that have no energy input.
std::unique_ptr<EnergySource> open_energy_source(const EnergyConfig& config, std::string* reason);

// One powercap zone under <sysfs_root>/class/powercap, as `epmoe info` shows it.
struct RaplZone {
    std::string zone;       // "intel-rapl:0" (package) or "intel-rapl:0:1" (sub-zone)
    std::string name;       // contents of `name`: package-0, core, uncore, dram, psys, ...
    std::string path;       // the zone's directory
    bool counted = false;   // summed by the rapl source: package-N top-level zones and dram zones
    bool readable = false;  // energy_uj and max_energy_range_uj read and parse
    std::string error;      // why not readable ("" if readable)
};

// One input of an hwmon device (energyN_input, powerN_input or tempN_input).
struct HwmonInput {
    std::string input;     // "power1_input"
    std::string kind;      // "energy" (uJ), "power" (uW) or "temp" (milli deg C)
    std::string label;     // contents of the matching *_label, or ""
    bool counted = false;  // summed by the hwmon source (temps are never summed, only max'ed)
    bool readable = false;
    std::string error;
};

// One hwmon device: <sysfs_root>/class/hwmon/hwmonN (attributes there or, on old kernels, in device/).
struct HwmonDevice {
    std::string device;  // "hwmon0"
    std::string name;    // contents of `name`: coretemp, k10temp, amd_energy, ...
    std::string path;    // the directory the attributes were read from
    std::vector<HwmonInput> inputs;
};

// Everything the energy sources can see under one sysfs root, and whether each source is usable.
struct EnergyProbe {
    std::string sysfs_root;
    std::vector<RaplZone> rapl;
    std::vector<HwmonDevice> hwmon;
    bool rapl_usable = false;   // >= 1 counted package zone, and every counted zone readable
    std::string rapl_why;       // one line: why (not) usable, naming the path and errno reason
    bool hwmon_usable = false;  // >= 1 counted energy/power input, and every counted input readable
    std::string hwmon_why;
    std::string auto_choice;  // what `auto` picks: rapl, hwmon or estimated
    std::string auto_reason;  // one line: why
};

// Lists RAPL zones and hwmon devices under sysfs_root and decides what `auto` would pick. Never throws
// for unreadable files: they are reported in the probe.
EnergyProbe probe_energy(const std::string& sysfs_root);

// This rank's view of one step's energy. Every field is absent when the source is `none`.
struct StepEnergy {
    std::optional<double> rank_joules;   // J: this rank's share of the host's step joules, by busy time
    std::optional<double> host_joules;   // J: the host's joules in this step; only on the host's reader rank
    std::optional<double> host_power_w;  // W: the host's average power over the step
    std::optional<double> host_temp_c;   // deg C: the host's hottest temperature input, if readable
};

// Per-host energy attribution. Ranks are grouped by host (Comm::split_shared); host rank 0 opens and
// reads the source, and the host's joules are shared among its ranks in proportion to busy time.
class HostEnergy {
public:
    // Collective over world. Under `auto` all hosts agree on the best source every host can read.
    // Fails with AgreedError on every rank if the source cannot be opened on some host.
    HostEnergy(const mpi::Comm& world, const EnergyConfig& config);
    // Collective over world, once per step. busy_s: this rank's busy seconds in the step; work: this
    // rank's FLOPs, bytes and core-seconds in the step (summed over the host for `estimated`).
    StepEnergy step(double busy_s, const WorkCounters& work);
    // rapl | hwmon | estimated | none; the same on every rank.
    const std::string& source() const { return source_name_; }
    // One line saying why this source (host rank 0's view, shared with the host's ranks).
    const std::string& reason() const { return reason_; }
    bool is_reader() const { return host_.rank() == 0; }  // this rank reads the host's counters
    int host_ranks() const { return host_.size(); }       // ranks sharing this host
    int num_hosts() const { return num_hosts_; }

private:
    mpi::Comm world_;
    mpi::Comm host_;
    std::unique_ptr<EnergySource> source_;  // on host rank 0 only; null for `none`
    std::string source_name_;
    std::string reason_;
    int num_hosts_ = 1;
    WorkCounters host_work_;  // host totals since opening (host rank 0)
    double last_joules_ = 0;  // the source's joules at the previous step (host rank 0)
};

}  // namespace epmoe
