// `epmoe info`: ranks and hosts, hwloc topology and bindings, MPI, BLAS and energy sources.
// Every rank takes part (host names and bindings are gathered); rank 0 probes and prints.
#include "app/info.hpp"

#include <cblas.h>

#include <algorithm>
#include <iostream>
#include <sstream>

#include "app/openblas_core.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/comm/topology.hpp"
#include "epmoe/energy/energy.hpp"
#include "epmoe/ops/gemm_time.hpp"
#include "epmoe/ops/mlp_kernel.hpp"

namespace epmoe {
namespace {

std::string mpi_library_name(const std::string& version) {
    if (version.find("Open MPI") != std::string::npos) return "Open MPI";
    if (version.find("Intel(R) MPI") != std::string::npos) return "Intel MPI";
    if (version.find("MVAPICH") != std::string::npos) return "MVAPICH";
    if (version.find("MPICH") != std::string::npos) return "MPICH";
    return "unknown";
}

// hosts[r] is rank r's host: one entry per host, in order of first rank, with its ranks.
Json group_hosts(const std::vector<std::string>& hosts) {
    Json out = Json::array();
    for (size_t r = 0; r < hosts.size(); ++r) {
        auto it = std::find_if(out.begin(), out.end(), [&](const Json& h) { return h["name"] == hosts[r]; });
        if (it == out.end()) {
            out.push_back({{"name", hosts[r]}, {"ranks", Json::array()}});
            it = out.end() - 1;
        }
        (*it)["ranks"].push_back(static_cast<int>(r));
    }
    return out;
}

Json topology_json(const std::string& host) {
    TopologySummary t = topology_summary();
    auto cache = [](const CacheLevel& c) { return Json{{"size_bytes", c.size_bytes}, {"count", c.count}}; };
    return {{"host", host},
            {"packages", t.packages},
            {"cores", t.cores},
            {"pus", t.pus},
            {"numa_nodes", t.numa_nodes},
            {"caches", {{"l1d", cache(t.l1d)}, {"l2", cache(t.l2)}, {"l3", cache(t.l3)}}}};
}

Json blas_json() {
    const char* config = openblas_get_config();
    const char* core = openblas_get_corename();
    const std::string detected = openblas_core_detected(), warning = openblas_core_warning();
    return {{"library", "OpenBLAS"},
            {"config", config ? config : ""},
            {"core", core ? core : ""},
            {"core_detected", detected.empty() ? Json(nullptr) : Json(detected)},
            {"warning", warning.empty() ? Json(nullptr) : Json(warning)},
            {"threads", openblas_get_num_threads()},
            {"train_weight_grad_gemm", sgemm_weight_grad_library()}};
}

// The GEMM kernel `epmoe run` would use with this config (compute.backend auto resolved) and the libraries.
Json compute_json(const Config& config) {
    std::shared_ptr<const MlpKernel> kernel =
        make_mlp_kernel(config.compute.backend, config.compute.dtype, false, config.compute.packs_weights(),
                        config.compute.weight_panel_kib);
    return {{"backend", config.compute.backend},
            {"dtype", config.compute.dtype},
            {"pack_weights", config.compute.pack_weights},
            {"weight_panel_kib", config.compute.weight_panel_kib},
            {"kernel", kernel->name()},
            {"implementation", kernel->implementation()},
            {"onednn", onednn_description()},
            {"threads_per_rank", config.threads_per_rank},
            {"expert_threads", config.expert_threads}};
}

Json energy_json(const Config& config, const std::string& host) {
    EnergyProbe p = probe_energy(config.energy.sysfs_root);
    Json rapl = Json::array();
    for (const auto& z : p.rapl)
        rapl.push_back({{"zone", z.zone},
                        {"name", z.name},
                        {"path", z.path},
                        {"counted", z.counted},
                        {"readable", z.readable},
                        {"error", z.error}});
    Json hwmon = Json::array();
    for (const auto& d : p.hwmon) {
        Json inputs = Json::array();
        bool any = false;
        for (const auto& in : d.inputs) {
            inputs.push_back({{"input", in.input},
                              {"kind", in.kind},
                              {"label", in.label},
                              {"counted", in.counted},
                              {"readable", in.readable},
                              {"error", in.error}});
            any = any || in.readable;
        }
        hwmon.push_back(
            {{"device", d.device}, {"name", d.name}, {"path", d.path}, {"readable", any}, {"inputs", inputs}});
    }
    return {{"host", host},
            {"sysfs_root", p.sysfs_root},
            {"source", config.energy.source},
            {"auto_choice", p.auto_choice},
            {"auto_reason", p.auto_reason},
            {"rapl_usable", p.rapl_usable},
            {"rapl_why", p.rapl_why},
            {"hwmon_usable", p.hwmon_usable},
            {"hwmon_why", p.hwmon_why},
            {"rapl", rapl},
            {"hwmon", hwmon}};
}

std::string bytes_text(int64_t b) {
    if (b >= (int64_t{1} << 20) && b % (int64_t{1} << 20) == 0) return cat(b >> 20, " MiB");
    if (b >= 1024 && b % 1024 == 0) return cat(b >> 10, " KiB");
    return cat(b, " B");
}

std::string join_ranks(const Json& ranks) {
    std::string out;
    for (const auto& r : ranks) out += (out.empty() ? "" : ", ") + std::to_string(r.get<int>());
    return out;
}

void print_energy_text(std::ostream& os, const Json& e) {
    os << "energy (host " << e["host"].get<std::string>() << ", sysfs_root " << e["sysfs_root"].get<std::string>()
       << ", energy.source = " << e["source"].get<std::string>() << "):\n";
    os << "  rapl: " << (e["rapl_usable"].get<bool>() ? "usable" : "not usable") << ": "
       << e["rapl_why"].get<std::string>() << "\n";
    for (const auto& z : e["rapl"])
        os << "    " << z["zone"].get<std::string>() << "  " << z["name"].get<std::string>()
           << (z["counted"].get<bool>() ? "  (summed)" : "  (not summed)")
           << "  readable: " << (z["readable"].get<bool>() ? "yes" : "no " + z["error"].get<std::string>()) << "\n";
    os << "  hwmon: " << (e["hwmon_usable"].get<bool>() ? "usable" : "not usable") << ": "
       << e["hwmon_why"].get<std::string>() << "\n";
    for (const auto& d : e["hwmon"]) {
        os << "    " << d["device"].get<std::string>() << "  " << d["name"].get<std::string>() << "\n";
        for (const auto& in : d["inputs"]) {
            std::string label = in["label"].get<std::string>();
            os << "      " << in["input"].get<std::string>() << (label.empty() ? "" : " '" + label + "'") << "  "
               << in["kind"].get<std::string>() << (in["counted"].get<bool>() ? " (summed)" : "")
               << "  readable: " << (in["readable"].get<bool>() ? "yes" : "no " + in["error"].get<std::string>())
               << "\n";
        }
    }
    os << "  auto would pick: " << e["auto_choice"].get<std::string>() << " (" << e["auto_reason"].get<std::string>()
       << ")\n";
}

void print_text(std::ostream& os, const Json& j) {
    const Json& t = j["topology"];
    const Json& c = t["caches"];
    os << "ranks: " << j["ranks"].get<int>() << " on " << j["hosts"].size() << " host(s)\n";
    for (const auto& h : j["hosts"])
        os << "  host " << h["name"].get<std::string>() << ": ranks " << join_ranks(h["ranks"]) << "\n";
    os << "topology (host " << t["host"].get<std::string>() << "): " << t["packages"] << " package(s), " << t["cores"]
       << " cores, " << t["pus"] << " PUs, " << t["numa_nodes"] << " NUMA node(s)\n";
    os << "  caches:";
    for (const char* level : {"l1d", "l2", "l3"})
        if (c[level]["count"].get<int>() > 0)
            os << " " << level << " " << bytes_text(c[level]["size_bytes"].get<int64_t>()) << " x" << c[level]["count"];
    os << "\nbindings (resources.bind = " << j["bind"].get<std::string>()
       << (j["bind"] == "none" ? ": as the launcher left them" : ": hwloc, threads_per_rank cores per rank") << "):\n";
    for (const auto& b : j["bindings"])
        os << "  rank " << b["rank"] << " on " << b["host"].get<std::string>() << ": cpus "
           << b["cpus"].get<std::string>() << "\n";
    os << "mpi: " << j["mpi"]["library"].get<std::string>() << ": " << j["mpi"]["version_string"].get<std::string>()
       << "\n";
    os << "blas: " << j["blas"]["library"].get<std::string>() << ", core " << j["blas"]["core"].get<std::string>()
       << (j["blas"]["core_detected"].is_string() ? " (OPENBLAS_CORETYPE set by epmoe: OpenBLAS had detected " +
                                                        j["blas"]["core_detected"].get<std::string>() + ")"
                                                  : "")
       << ", " << j["blas"]["threads"] << " thread(s): " << j["blas"]["config"].get<std::string>()
       << "; training's large weight-gradient GEMMs on " << j["blas"]["train_weight_grad_gemm"].get<std::string>()
       << "\n";
    if (j["blas"]["warning"].is_string()) os << "  warning: " << j["blas"]["warning"].get<std::string>() << "\n";
    const Json& k = j["compute"];
    os << "compute: " << k["kernel"].get<std::string>() << " (compute.backend = " << k["backend"].get<std::string>()
       << ", compute.dtype = " << k["dtype"].get<std::string>() << "): " << k["implementation"].get<std::string>()
       << "; " << k["onednn"].get<std::string>() << "; " << k["threads_per_rank"] << " thread(s) per rank"
       << (k["threads_per_rank"].get<int>() > 1 ? ", experts split by " + k["expert_threads"].get<std::string>() : "")
       << "\n";
    print_energy_text(os, j["energy"]);
}

}  // namespace

int info(const mpi::Comm& world, const Config& config, bool json) {
    std::vector<std::string> hosts = mpi::allgather_strings(world, mpi::processor_name());
    if (config.bind == "core") {  // as `epmoe run` binds, so the bindings below are the run's
        const mpi::Comm host = world.split_shared();
        mpi::all_or_none(world, [&] { bind_to_cores(host.rank(), host.size(), config.threads_per_rank); });
    }
    std::vector<std::string> cpus = mpi::allgather_strings(world, cpu_binding());
    Json doc;
    mpi::all_or_none(world, [&] {
        if (world.rank() != 0) return;
        doc["ranks"] = world.size();
        doc["hosts"] = group_hosts(hosts);
        doc["topology"] = topology_json(hosts[0]);
        doc["bind"] = config.bind;
        doc["bindings"] = Json::array();
        for (int r = 0; r < world.size(); ++r)
            doc["bindings"].push_back({{"rank", r}, {"host", hosts[r]}, {"cpus", cpus[r]}});
        std::string version = mpi::library_version();
        std::replace(version.begin(), version.end(), '\t', ' ');  // MPICH: "MPICH Version:\t4.0.2"
        doc["mpi"] = {{"library", mpi_library_name(version)}, {"version_string", version}};
        set_compute_threads(config.threads_per_rank);  // as `epmoe run` sets them
        doc["blas"] = blas_json();
        doc["compute"] = compute_json(config);
        doc["energy"] = energy_json(config, hosts[0]);
    });
    if (world.rank() == 0) {
        if (json)
            std::cout << doc.dump(2) << "\n";
        else
            print_text(std::cout, doc);
        std::cout.flush();
    }
    return 0;
}

}  // namespace epmoe
