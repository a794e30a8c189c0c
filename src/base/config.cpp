#include "epmoe/base/config.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "epmoe/base/error.hpp"

namespace epmoe {
namespace {

const char* kDefaults = R"({
  "seed": 42,
  "model": {
    "path": "", "layers": "",
    "num_layers": 4, "d_model": 512, "d_ff": 1408, "num_experts": 8, "top_k": 2,
    "gate": "softmax", "norm_topk_prob": true, "rms_norm_eps": 1e-6
  },
  "workload": {
    "tokens_per_rank": 1024, "steps": 40, "skew": 1.2, "drift": 0.0,
    "num_clusters": 32, "noise": 0.5, "input": ""
  },
  "routing": {"capacity_factor": 0.0, "fidelity_sample_every": 16},
  "policy": {
    "name": "none",
    "aux_free": {"u": 0.01},
    "prev_batch": {"alpha": 0.5, "threshold": 1.05, "gain": 0.5},
    "energy": {"u": 0.01, "relax": 0.1},
    "round_robin": {"strength": 0.05},
    "random": {"strength": 0.05},
    "balanced": {"strength": 0.1},
    "temperature": {"t": 0.05}
  },
  "placement": {"name": "contiguous", "profile": "", "replicas": 2},
  "energy": {
    "source": "auto", "sysfs_root": "/sys", "sample_hz": 10.0, "power_budget_w": 0.0, "thermal_limit_c": 0.0,
    "estimate": {"pj_per_flop": 30.0, "pj_per_byte": 150.0, "idle_w_per_core": 3.0}
  },
  "coordinator": {"every_n_steps": 1},
  "resources": {"threads_per_rank": 1, "bind": "none", "mpi_wait": "auto"},
  "compute": {"backend": "auto", "dtype": "fp32", "overlap_chunks": 1},
  "output": {"dir": "", "dump": "", "quiet": false, "progress_interval_s": 5.0},
  "simulate": {
    "ranks": 16, "platform": "fat-tree", "bandwidth": "100Gbps", "latency": "1us", "ranks_per_node": 4,
    "gflops_per_core": 0.0, "loopback_bandwidth": "8GBps", "loopback_latency": "1us",
    "binary": "", "smpirun": "smpirun"
  }
})";

std::string type_name(const Json& j) {
    if (j.is_boolean()) return "a boolean";
    if (j.is_number_integer()) return "an integer";
    if (j.is_number()) return "a number";
    if (j.is_string()) return "a string";
    if (j.is_object()) return "a group of keys";
    return "null";
}

bool same_kind(const Json& def, const Json& value) {
    if (def.is_boolean()) return value.is_boolean();
    if (def.is_number_integer()) return value.is_number_integer();
    if (def.is_number()) return value.is_number();
    if (def.is_string()) return value.is_string();
    if (def.is_object()) return value.is_object();
    return false;
}

std::string known_keys(const Json& group) {
    std::string out;
    for (auto it = group.begin(); it != group.end(); ++it) out += (out.empty() ? "" : ", ") + it.key();
    return out;
}

void merge_at(Json& base, const Json& overlay, const std::string& source, const std::string& prefix) {
    for (auto it = overlay.begin(); it != overlay.end(); ++it) {
        std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
        if (!base.contains(it.key()))
            fail(source, ": unknown config key '", key, "' (known here: ", known_keys(base), ")");
        Json& slot = base[it.key()];
        if (!same_kind(slot, it.value()))
            fail(source, ": config key ", key, " = ", it.value().dump(), " must be ", type_name(slot));
        if (slot.is_object()) merge_at(slot, it.value(), source, key);
        else slot = it.value();
    }
}

Json parse_typed(const Json& def, const std::string& key, const std::string& text) {
    auto bad = [&]() -> Json { fail("--set ", key, "=", text, ": must be ", type_name(def)); };
    if (def.is_boolean()) {
        if (text == "true" || text == "1") return true;
        if (text == "false" || text == "0") return false;
        return bad();
    }
    if (def.is_number()) {
        std::istringstream in(text);
        if (def.is_number_integer()) {
            long long v;
            if (!(in >> v) || !in.eof()) return bad();
            return v;
        }
        double v;
        if (!(in >> v) || !in.eof()) return bad();
        return v;
    }
    if (def.is_string()) return text;
    fail("--set ", key, "=", text, ": ", key, " is a group; set one of its keys: ", known_keys(def));
}

// Value of group.key, with the "config key" prefix in any error.
const Json& at(const Json& j, const std::string& group, const std::string& key) {
    return j.at(group).at(key);
}

[[noreturn]] void bad_value(const std::string& key, const Json& value, const std::string& why) {
    fail("config key ", key, " = ", value.dump(), ": ", why);
}

int64_t int_in(const Json& j, const std::string& group, const std::string& key, int64_t lo, int64_t hi) {
    const Json& v = group.empty() ? j.at(key) : at(j, group, key);
    int64_t x = v.get<int64_t>();
    std::string name = group.empty() ? key : group + "." + key;
    if (x < lo) bad_value(name, v, cat("must be >= ", lo));
    if (x > hi) bad_value(name, v, cat("must be <= ", hi));
    return x;
}

double real_in(const Json& j, const std::string& group, const std::string& key, double lo, bool lo_open) {
    const Json& v = at(j, group, key);
    double x = v.get<double>();
    std::string name = group + "." + key;
    if (!std::isfinite(x)) bad_value(name, v, "must be finite");
    if (lo_open ? !(x > lo) : !(x >= lo)) bad_value(name, v, cat("must be ", lo_open ? "> " : ">= ", lo));
    return x;
}

std::string one_of(const Json& j, const std::string& group, const std::string& key,
                   const std::vector<std::string>& allowed) {
    const Json& v = at(j, group, key);
    std::string s = v.get<std::string>();
    for (const auto& a : allowed)
        if (s == a) return s;
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    bad_value(group + "." + key, v, "must be one of " + list);
}

// policy.<name>.<param>: finite and >= 0; prev_batch.alpha in (0, 1], prev_batch.threshold >= 1,
// energy.relax in [0, 1]. Defaults and their sources: src/control/policy/<name>.cpp and README.md.
void check_policy_params(const Json& policy) {
    for (auto group = policy.begin(); group != policy.end(); ++group) {
        if (!group.value().is_object()) continue;
        for (auto it = group.value().begin(); it != group.value().end(); ++it) {
            const std::string key = cat("policy.", group.key(), ".", it.key());
            double x = it.value().get<double>();
            if (!std::isfinite(x) || x < 0) bad_value(key, it.value(), "must be finite and >= 0");
            if (key == "policy.prev_batch.alpha" && !(x > 0 && x <= 1)) bad_value(key, it.value(), "must be in (0, 1]");
            if (key == "policy.prev_batch.threshold" && x < 1) bad_value(key, it.value(), "must be >= 1");
            if (key == "policy.energy.relax" && x > 1) bad_value(key, it.value(), "must be in [0, 1]");
        }
    }
}

// A SimGrid quantity: a positive number and one of the units SimGrid reads, e.g. "100Gbps", "1us".
std::string quantity(const Json& j, const std::string& key, const std::vector<std::string>& units) {
    const Json& v = at(j, "simulate", key);
    const std::string s = v.get<std::string>();
    size_t end = 0;
    double x = 0;
    try {
        x = std::stod(s, &end);
    } catch (const std::exception&) {
        end = 0;
    }
    const std::string unit = s.substr(end);
    if (end == 0 || !std::isfinite(x) || x <= 0 || std::find(units.begin(), units.end(), unit) == units.end()) {
        std::string list;
        for (const auto& u : units) list += (list.empty() ? "" : ", ") + u;
        bad_value("simulate." + key, v, "must be a positive number with a unit (" + list + ")");
    }
    return s;
}

// simulate.*: the simulated cluster of `epmoe simulate` (ignored by `epmoe run`).
SimulateConfig simulate_config(const Json& j) {
    const std::vector<std::string> rates = {"bps", "kbps", "Mbps", "Gbps", "Tbps", "Bps", "kBps", "MBps", "GBps", "TBps"};
    const std::vector<std::string> times = {"s", "ms", "us", "ns"};
    SimulateConfig s;
    s.ranks = static_cast<int>(int_in(j, "simulate", "ranks", 1, 1 << 16));
    s.platform = at(j, "simulate", "platform").get<std::string>();
    const bool file = s.platform.size() > 4 && s.platform.substr(s.platform.size() - 4) == ".xml";
    if (!file && s.platform != "fat-tree" && s.platform != "torus" && s.platform != "dragonfly")
        bad_value("simulate.platform", at(j, "simulate", "platform"), "must be fat-tree, torus, dragonfly or a FILE.xml");
    s.bandwidth = quantity(j, "bandwidth", rates);
    s.latency = quantity(j, "latency", times);
    s.ranks_per_node = static_cast<int>(int_in(j, "simulate", "ranks_per_node", 1, 1 << 12));
    s.gflops_per_core = real_in(j, "simulate", "gflops_per_core", 0, false);
    s.loopback_bandwidth = quantity(j, "loopback_bandwidth", rates);
    s.loopback_latency = quantity(j, "loopback_latency", times);
    s.binary = at(j, "simulate", "binary").get<std::string>();
    s.smpirun = at(j, "simulate", "smpirun").get<std::string>();
    return s;
}

}  // namespace

const Json& default_config() {
    static const Json defaults = Json::parse(kDefaults);
    return defaults;
}

void merge_config(Json& base, const Json& overlay, const std::string& source) {
    if (!overlay.is_object()) fail(source, ": the config must be a JSON object of groups");
    merge_at(base, overlay, source, "");
}

void apply_set(Json& config, const std::string& assignment) {
    size_t eq = assignment.find('=');
    if (eq == std::string::npos || eq == 0) fail("--set ", assignment, ": expected key=value, e.g. model.top_k=4");
    std::string key = assignment.substr(0, eq);
    std::string text = assignment.substr(eq + 1);
    Json* slot = &config;
    std::string walked;
    std::istringstream parts(key);
    for (std::string part; std::getline(parts, part, '.');) {
        if (!slot->is_object() || !slot->contains(part))
            fail("--set ", assignment, ": unknown config key '", key, "'",
                 slot->is_object() ? " (known under '" + (walked.empty() ? std::string("the top level") : walked) +
                                         "': " + known_keys(*slot) + ")"
                                   : "");
        slot = &(*slot)[part];
        walked += (walked.empty() ? "" : ".") + part;
    }
    *slot = parse_typed(*slot, key, text);
}

Json read_config_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) fail(path, ": cannot read config file");
    try {
        return Json::parse(in);
    } catch (const Json::parse_error& e) {
        fail(path, ": not valid JSON (", e.what(), ")");
    }
}

Config Config::from_json(const Json& j) {
    Config c;
    c.json = j;
    c.seed = static_cast<uint64_t>(int_in(j, "", "seed", 0, INT64_MAX));
    ModelConfig& m = c.model;
    m.path = at(j, "model", "path").get<std::string>();
    m.layers = at(j, "model", "layers").get<std::string>();
    m.num_layers = static_cast<int>(int_in(j, "model", "num_layers", 1, 4096));
    m.d_model = static_cast<int>(int_in(j, "model", "d_model", 1, 1 << 20));
    m.d_ff = static_cast<int>(int_in(j, "model", "d_ff", 1, 1 << 22));
    m.num_experts = static_cast<int>(int_in(j, "model", "num_experts", 1, 1 << 16));
    m.top_k = static_cast<int>(int_in(j, "model", "top_k", 1, m.num_experts));
    m.gate = one_of(j, "model", "gate", {"softmax", "sigmoid"}) == "softmax" ? GateKind::kSoftmax : GateKind::kSigmoid;
    m.norm_topk_prob = at(j, "model", "norm_topk_prob").get<bool>();
    m.rms_norm_eps = real_in(j, "model", "rms_norm_eps", 0, true);

    WorkloadConfig& w = c.workload;
    w.tokens_per_rank = int_in(j, "workload", "tokens_per_rank", 1, int64_t{1} << 30);
    w.steps = static_cast<int>(int_in(j, "workload", "steps", 1, 1 << 30));
    w.skew = real_in(j, "workload", "skew", 0, false);
    w.drift = real_in(j, "workload", "drift", 0, false);
    w.num_clusters = static_cast<int>(int_in(j, "workload", "num_clusters", 1, 1 << 20));
    w.noise = real_in(j, "workload", "noise", 0, false);
    w.input = at(j, "workload", "input").get<std::string>();

    c.capacity_factor = real_in(j, "routing", "capacity_factor", 0, false);
    c.fidelity_sample_every = static_cast<int>(int_in(j, "routing", "fidelity_sample_every", 0, 1 << 30));
    c.policy = one_of(j, "policy", "name",
                      {"none", "aux_free", "prev_batch", "energy", "round_robin", "random", "balanced", "temperature"});
    check_policy_params(j.at("policy"));
    c.placement = one_of(j, "placement", "name", {"contiguous", "round_robin", "balanced", "replicated"});
    c.placement_profile = at(j, "placement", "profile").get<std::string>();
    c.placement_replicas = static_cast<int>(int_in(j, "placement", "replicas", 0, 1 << 16));
    c.energy.source = one_of(j, "energy", "source", {"auto", "rapl", "hwmon", "estimated", "none"});
    c.energy.sysfs_root = at(j, "energy", "sysfs_root").get<std::string>();
    c.energy.sample_hz = real_in(j, "energy", "sample_hz", 0, false);
    c.energy.power_budget_w = real_in(j, "energy", "power_budget_w", 0, false);
    c.energy.thermal_limit_c = real_in(j, "energy", "thermal_limit_c", 0, false);
    // energy.estimate.*: defaults are order-of-magnitude figures for a recent x86 server socket. pJ/FLOP:
    // ~150 W over ~2 TFLOP/s FP32 peak is ~75 pJ/FLOP all-in, ~30 dynamic; pJ/byte: DRAM at ~15-20 pJ/bit
    // (Horowitz, ISSCC 2014); W/core: ~60 W idle socket / 20 cores.
    auto coefficient = [&](const char* k) {
        const Json& v = j.at("energy").at("estimate").at(k);
        double x = v.get<double>();
        if (!std::isfinite(x) || x < 0) bad_value(cat("energy.estimate.", k), v, "must be finite and >= 0");
        return x;
    };
    c.energy.estimate = {coefficient("pj_per_flop"), coefficient("pj_per_byte"), coefficient("idle_w_per_core")};
    if (c.energy.sample_hz > 1000) bad_value("energy.sample_hz", j.at("energy").at("sample_hz"), "must be <= 1000");
    c.coordinator_every_n_steps = static_cast<int>(int_in(j, "coordinator", "every_n_steps", 1, 1 << 30));
    c.threads_per_rank = static_cast<int>(int_in(j, "resources", "threads_per_rank", 1, 1024));
    c.bind = one_of(j, "resources", "bind", {"none", "core"});
    c.mpi_wait = one_of(j, "resources", "mpi_wait", {"auto", "block", "yield"});
    c.compute.backend = one_of(j, "compute", "backend", {"auto", "openblas", "onednn"});
    c.compute.dtype = one_of(j, "compute", "dtype", {"fp32", "bf16"});
    c.compute.overlap_chunks = static_cast<int>(int_in(j, "compute", "overlap_chunks", 1, 64));
    if (c.compute.backend == "openblas" && c.compute.dtype != "fp32")
        bad_value("compute.dtype", j.at("compute").at("dtype"),
                  "compute.backend openblas runs fp32 only (Debian's OpenBLAS has no sbgemm); use onednn or auto");
    c.output.dir = at(j, "output", "dir").get<std::string>();
    c.output.dump = at(j, "output", "dump").get<std::string>();
    c.output.quiet = at(j, "output", "quiet").get<bool>();
    c.output.progress_interval_s = real_in(j, "output", "progress_interval_s", 0, true);
    c.simulate = simulate_config(j);
    return c;
}

}  // namespace epmoe
