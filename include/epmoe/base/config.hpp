// The effective configuration, typed and validated: built-in defaults <- --config FILE.json <- command-line
// flags <- --set a.b=v (json.hpp), parsed once by Config::from_json. A Config that exists is valid.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "epmoe/base/json.hpp"
#include "epmoe/base/shape.hpp"

namespace epmoe {

// model.*: the synthetic model's shape (ModelShape, sliced off where only the shape is needed), or a checkpoint.
struct ModelConfig : ModelShape {
    std::string path;    // Hugging Face checkpoint; "" = synthetic
    std::string layers;  // "A-B" subset of checkpoint layers; "" = all
};

struct WorkloadConfig {
    int64_t tokens_per_rank = 0;
    int steps = 0;
    double skew = 0;       // Zipf exponent of cluster popularity; 0 = uniform
    double drift = 0;      // clusters the popularity ranking moves per step
    int num_clusters = 0;  // token clusters the synthetic workload draws from
    double noise = 0;      // spread of a token around its cluster centre
    std::string input;     // safetensors with hidden_states [T, d_model] or [S, T, d_model]; "" = synthetic
};

// Coefficients of the `estimated` energy source (energy.estimate.*); defaults documented in src/base/config.cpp.
struct EnergyEstimate {
    double pj_per_flop = 0;      // dynamic energy per FLOP, pJ
    double pj_per_byte = 0;      // energy per byte moved, pJ
    double idle_w_per_core = 0;  // power drawn whether or not work is done, W per core
};

struct EnergyConfig {
    std::string source;          // auto | rapl | hwmon | estimated | none
    std::string sysfs_root;      // where class/powercap and class/hwmon are read
    double sample_hz = 0;        // rate of the thread sampling RAPL/hwmon counters, Hz; 0 = only at each read
    double power_budget_w = 0;   // per-host power budget for the energy policy, W; 0 = none
    double thermal_limit_c = 0;  // temperature the energy policy steers below, deg C; 0 = none
    EnergyEstimate estimate;
};

struct OutputConfig {
    std::string dir;   // results directory; "" = results/<UTC timestamp>-<policy>
    std::string dump;  // --dump-output file; "" = none
    bool quiet = false;
    bool overwrite = false;  // replace the results of an earlier run in dir (else refused)
    double progress_interval_s = 5;
};

// text.*: the tokens of the whole-model commands (eval, generate) and how eval cuts them.
struct TextConfig {
    std::string tokens;          // --tokens: safetensors input_ids or a .bin token file (io/tokens.hpp); "" = synthetic
    std::string token_dtype;     // a .bin file's id width: auto | uint16 | uint32
    std::string text;            // --text: a UTF-8 file tokenized by the checkpoint's tokenizer; "" = none
    std::string tokenizer;       // auto | json | sp (the model directory's tokenizer.json / tokenizer.model) | a path
    bool special_tokens = true;  // add the tokenizer's special tokens (BOS/EOS) to --text's ids
    int64_t ctx = 0;             // eval: tokens a window reads
    int64_t stride = 0;          // eval: tokens a window advances; 0 = ctx (disjoint windows)
    int batch = 0;               // windows (eval) or sequences (generate) a rank runs in one step
    std::string dump_logits;     // eval: write logits [B, S, V] of a [B, S] input here; "" = none
    int synthetic_sequences = 0, synthetic_length = 0;  // the input without --tokens: [B, S] ids from the seed
};

// generate.*: decoding.
struct GenerateConfig {
    int max_new_tokens = 0;
    double temperature = 0;  // 0 = greedy (argmax); > 0 samples
    double top_p = 1;        // nucleus sampling's mass (with temperature > 0)
};

// train.*: `epmoe train` (the window length is text.ctx).
struct TrainConfig {
    int steps = 0;
    int batch = 0;              // windows in the global batch of a step, split over the ranks
    int ep_size = 0;            // ranks of an expert-parallel group (train/groups.hpp); 0 = all (pure EP)
    double lr = 0, min_lr = 0;  // the schedule's peak and floor (optim.hpp LrSchedule)
    int warmup_steps = 0;
    double weight_decay = 0;   // AdamW's, on matrices (and the router with decay_router)
    double grad_clip = 0;      // the global gradient norm's limit; 0 = none
    double aux_loss_coef = 0;  // the load-balancing loss's weight; < 0 = the checkpoint's (synthetic: 0.01)
    double z_loss_coef = 0;    // the router z-loss's weight (ST-MoE); 0 = off
    bool decay_router = false;
    std::string data, val_data;  // token files; "" = the byte-level corpus (train.corpus), held-out split
    std::string text, val_text;  // UTF-8 files in place of data / val_data: the model's tokenizer's ids, or bytes
    double val_fraction = 0;     // the corpus' (or data's) tail held out when val_data is ""
    int val_windows = 0;         // validation windows of ctx tokens
    int eval_every = 0;          // steps between validations (and after the last); 0 = only after the last
    std::string save_dir;        // where the trained model is written as a HF checkpoint; "" = nowhere
    int save_every = 0;          // steps between saves (and after the last); 0 = only after the last
    std::string corpus;          // a file or a folder of text files read as bytes (vocabulary 256)
    std::string family;          // the checkpoint family a synthetic model is written as
    std::string resume;          // a checkpoint train.save_dir wrote: its weights, moments and step; "" = none
    std::string sampler;         // random (seeded windows) | sequential (the data's rows in order)
    int decay_steps = 0;         // the cosine's length in steps (nanoGPT's lr_decay_iters); 0 = steps
    std::string dump_grads;      // a safetensors file for the first step's gradients; "" = none
};

// compute.*: the GEMM backend and precision of the experts (ops/mlp_kernel.hpp).
struct ComputeConfig {
    std::string backend;                // auto | openblas | onednn | amx (auto: resolve_backend in ops/mlp_kernel.hpp)
    std::string dtype;                  // fp32 | bf16 (weights; activations and accumulation stay FP32)
    std::string pack_weights = "auto";  // auto (packed at load where oneDNN's brgemm runs) | off (runtime-M)
    int weight_panel_kib = 0;           // 0 | 64..65536: the packed FP32 kernel's weights in column panels of this size
    int overlap_chunks = 1;             // 1..64: tokens dispatched in chunks, one's Ialltoallv behind another's experts

    bool packs_weights() const { return pack_weights != "off"; }  // make_mlp_kernel's pack
};

// simulate.*: the cluster `epmoe simulate` runs the ranks on under SimGrid's SMPI (`epmoe run` ignores it).
struct SimulateConfig {
    int ranks = 0;                                     // simulated MPI ranks
    std::string platform;                              // fat-tree | torus | dragonfly | a SimGrid platform FILE.xml
    std::string bandwidth, latency;                    // each network link, SimGrid units: "100Gbps", "1us"
    int ranks_per_node = 0;                            // ranks (cores) per simulated node
    double gflops_per_core = 0;                        // the expert GEMM rate, GFLOP/s per rank; 0 = measured at launch
    std::string loopback_bandwidth, loopback_latency;  // between ranks of one node (shared memory)
    std::string binary;   // the SMPI build of epmoe; "" = build-smpi/epmoe beside this binary's folder
    std::string smpirun;  // SimGrid's launcher
};

// routing.*: capacity and the fidelity measurement of the router.
struct RoutingConfig {
    double capacity_factor = 0;      // at most ceil(X * T * k / E) assignments an expert; 0 = dropless
    int fidelity_sample_every = 16;  // output_rel_l2 on global tokens t % N == 0; 0 = off
};

// policy.*: the routing policy and each policy's parameters (control/policy/<name>.cpp says what they do).
struct PolicyConfig {
    std::string name;  // policy.name, a name of control/policy.hpp's registry
    struct AuxFree {
        double u = 0;
    } aux_free;  // score units a round
    struct PrevBatch {
        double alpha = 0, threshold = 0, gain = 0;
    } prev_batch;  // EMA weight, max/mean, gain
    struct Energy {
        double u = 0, relax = 0;
    } energy;  // step, decay with no pressure
    struct Strength {
        double strength = 0;
    } round_robin, random, balanced;  // score units
    struct Temperature {
        double t = 0;
    } temperature;  // log-space scale
    struct Ttt {
        int rank = 0;                                  // columns of A, rows of B
        double lr = 0;                                 // Adam step size
        int iters = 0;                                 // gradient steps an update
        double balance = 0, energy = 0, fidelity = 0;  // the objective's weights
        double power_w = 0;        // power budget, W (0 = none): the energy weight rises while it is exceeded
        double max_delta_ppl = 0;  // eval: held-out perplexity over the checkpoint router's, relative (0.01 = 1 %)
        int check_every = 0;       // eval: steps between held-out checks
        int holdout_windows = 0;   // eval: windows of the input held out of the updates for the checks
        int sample_every = 0;      // update on global tokens t with t % sample_every == 0
    } ttt;                         // control/ttt.hpp
};

// placement.*: which rank owns which expert (moe/placement.hpp).
struct PlacementConfig {
    std::string name;     // contiguous | round_robin | balanced | replicated
    std::string profile;  // an earlier run's results directory (its load) for balanced/replicated; "" = none
    int replicas = 0;     // extra copies of the hottest experts (replicated)
};

// The validated configuration. Construct with Config::from_json.
struct Config {
    uint64_t seed = 0;
    ModelConfig model;
    WorkloadConfig workload;
    RoutingConfig routing;
    PolicyConfig policy;
    PlacementConfig placement;
    EnergyConfig energy;
    int coordinator_every_n_steps = 1;
    int threads_per_rank = 1;
    // resources.expert_threads: how a rank's threads share its experts: tasks (each expert on one thread,
    // several at once) | gemm (the experts in turn, the threads inside each GEMM)
    std::string expert_threads;
    std::string bind;  // resources.bind: none (leave it to the launcher) | core (hwloc, topology.hpp)
    // resources.mpi_wait: how ranks wait in collectives (mpi::WaitMode): block | yield | auto (block when
    // every host has a PU for each rank's threads, else yield)
    std::string mpi_wait;
    // resources.exchange: how the ranks of one host exchange token rows: shm (an MPI-3 shared-memory window,
    // MPI between hosts) | mpi (MPI_Alltoallv) | auto (shm with one chunk, outside the simulation; else mpi)
    std::string exchange;
    // resources.inter_host: how rows cross hosts in the MPI exchange: flat (one MPI_Alltoallv over every rank) |
    // two_level (inside each host, then one message a rank to its counterpart on each other host)
    std::string inter_host;
    // resources.work_sharing: host (the ranks of a host run row blocks of each other's experts once their own are
    // taken; needs the shm exchange) | none (each expert runs on its owner) | auto (host where the exchange is shm)
    std::string work_sharing;
    ComputeConfig compute;
    OutputConfig output;
    SimulateConfig simulate;
    TextConfig text;
    GenerateConfig generate;
    TrainConfig train;
    std::shared_ptr<const Json> json;  // the full effective config, as written to config.json
    std::string command_line;          // the command as typed (summary.json); set by the parser, not a config key

    // Validates every key of a merged config (json.hpp); fails with "config key K = V: reason".
    static Config from_json(const Json& merged);
};

}  // namespace epmoe
