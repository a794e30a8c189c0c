// The effective configuration: built-in defaults <- --config FILE.json <- command-line flags <- --set a.b=v.
// Every key has a default, and its default's JSON type is the key's type. A Config that exists is valid.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "epmoe/base/shape.hpp"

namespace epmoe {

using Json = nlohmann::ordered_json;

// The built-in defaults: the embedded model and workload of `epmoe run` with no arguments.
const Json& default_config();

// Overlays `overlay` onto `base` key by key. Unknown keys and wrong types fail, naming `source` and the key.
void merge_config(Json& base, const Json& overlay, const std::string& source);

// Applies one "a.b=value" assignment, typing value by the key's default (int, float, bool or string).
void apply_set(Json& config, const std::string& assignment);

// Reads a JSON config file (an object of groups); fails naming the file on unreadable or bad JSON.
Json read_config_file(const std::string& path);

// model.*: the synthetic model's shape (ModelShape, sliced off where only the shape is needed), or a checkpoint.
struct ModelConfig : ModelShape {
    std::string path;       // Hugging Face checkpoint; "" = synthetic
    std::string layers;     // "A-B" subset of checkpoint layers; "" = all
};

struct WorkloadConfig {
    int64_t tokens_per_rank = 0;
    int steps = 0;
    double skew = 0;          // Zipf exponent of cluster popularity; 0 = uniform
    double drift = 0;         // clusters the popularity ranking moves per step
    int num_clusters = 0;     // token clusters the synthetic workload draws from
    double noise = 0;         // spread of a token around its cluster centre
    std::string input;        // safetensors with hidden_states [T, d_model]; "" = synthetic
};

// Coefficients of the `estimated` energy source (energy.estimate.*); defaults documented in src/base/config.cpp.
struct EnergyEstimate {
    double pj_per_flop = 0;      // dynamic energy per FLOP, pJ
    double pj_per_byte = 0;      // energy per byte moved, pJ
    double idle_w_per_core = 0;  // power drawn whether or not work is done, W per core
};

struct EnergyConfig {
    std::string source;       // auto | rapl | hwmon | estimated | none
    std::string sysfs_root;   // where class/powercap and class/hwmon are read
    double sample_hz = 0;     // rate of the thread sampling RAPL/hwmon counters, Hz; 0 = only at each read
    double power_budget_w = 0;   // per-host power budget for the energy policy, W; 0 = none
    double thermal_limit_c = 0;  // temperature the energy policy steers below, deg C; 0 = none
    EnergyEstimate estimate;
};

struct OutputConfig {
    std::string dir;          // results directory; "" = results/<UTC timestamp>-<policy>
    std::string dump;         // --dump-output file; "" = none
    bool quiet = false;
    double progress_interval_s = 5;
};

// compute.*: the GEMM backend and precision of the experts (compute.hpp).
struct ComputeConfig {
    std::string backend;  // auto | openblas | onednn (auto: resolve_backend in compute.hpp)
    std::string dtype;    // fp32 | bf16 (weights; activations and accumulation stay FP32)
    int overlap_chunks = 1;  // 1..64: tokens dispatched in chunks, one's Ialltoallv behind another's experts
};

// simulate.*: the cluster `epmoe simulate` runs the ranks on under SimGrid's SMPI (`epmoe run` ignores it).
struct SimulateConfig {
    int ranks = 0;                   // simulated MPI ranks
    std::string platform;            // fat-tree | torus | dragonfly | a SimGrid platform FILE.xml
    std::string bandwidth, latency;  // each network link, SimGrid units: "100Gbps", "1us"
    int ranks_per_node = 0;          // ranks (cores) per simulated node
    double gflops_per_core = 0;      // the expert GEMM rate, GFLOP/s per rank; 0 = measured at launch
    std::string loopback_bandwidth, loopback_latency;  // between ranks of one node (shared memory)
    std::string binary;              // the SMPI build of epmoe; "" = build-smpi/epmoe beside this binary's folder
    std::string smpirun;             // SimGrid's launcher
};

// The validated configuration. Construct with Config::from_json.
struct Config {
    uint64_t seed = 0;
    ModelConfig model;
    WorkloadConfig workload;
    double capacity_factor = 0;   // routing.capacity_factor; 0 = dropless
    std::string policy;           // policy.name
    std::string placement;        // placement.name
    std::string placement_profile;  // placement.profile: an earlier run's results directory; "" = none
    int placement_replicas = 0;     // placement.replicas: extra copies of the hottest experts (replicated)
    int fidelity_sample_every = 16; // routing.fidelity_sample_every: output_rel_l2 on global tokens t % N == 0; 0 = off
    EnergyConfig energy;
    int coordinator_every_n_steps = 1;
    int threads_per_rank = 1;
    std::string bind;             // resources.bind: none (leave it to the launcher) | core (hwloc, topology.hpp)
    // resources.mpi_wait: how ranks wait in collectives (mpi::WaitMode): block | yield | auto (block when
    // every host has a PU for each rank's threads, else yield)
    std::string mpi_wait;
    ComputeConfig compute;
    OutputConfig output;
    SimulateConfig simulate;
    Json json;                    // the full effective config, as written to config.json

    // Validates every key of a merged config; fails with "config key K = V: reason".
    static Config from_json(const Json& merged);
};

}  // namespace epmoe
