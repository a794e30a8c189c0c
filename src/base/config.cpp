#include "epmoe/base/config.hpp"

#include <algorithm>
#include <cmath>

#include "epmoe/base/error.hpp"
#include "epmoe/base/json.hpp"

namespace epmoe {
namespace {

// Value of group.key, with the "config key" prefix in any error.
const Json& at(const Json& j, const std::string& group, const std::string& key) { return j.at(group).at(key); }

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

// policy.<name>.<param>: finite and >= 0.
double policy_param(const Json& j, const char* policy, const char* key) {
    const Json& v = j.at("policy").at(policy).at(key);
    const double x = v.get<double>();
    if (!std::isfinite(x) || x < 0) bad_value(cat("policy.", policy, ".", key), v, "must be finite and >= 0");
    return x;
}

// policy.ttt.<key>: an integer >= 1.
int policy_count(const Json& j, const char* policy, const char* key) {
    const Json& v = j.at("policy").at(policy).at(key);
    const int64_t x = v.get<int64_t>();
    if (x < 1 || x > 1000000) bad_value(cat("policy.", policy, ".", key), v, "must be an integer in [1, 1000000]");
    return static_cast<int>(x);
}

// policy.ttt.*: counts >= 1, weights and budgets finite and >= 0, lr > 0.
PolicyConfig::Ttt ttt_config(const Json& j) {
    PolicyConfig::Ttt t;
    t.rank = policy_count(j, "ttt", "rank");
    t.iters = policy_count(j, "ttt", "iters");
    t.check_every = policy_count(j, "ttt", "check_every");
    t.holdout_windows = policy_count(j, "ttt", "holdout_windows");
    t.sample_every = policy_count(j, "ttt", "sample_every");
    t.lr = policy_param(j, "ttt", "lr");
    if (t.lr <= 0) bad_value("policy.ttt.lr", j.at("policy").at("ttt").at("lr"), "must be > 0");
    t.balance = policy_param(j, "ttt", "balance");
    t.energy = policy_param(j, "ttt", "energy");
    t.fidelity = policy_param(j, "ttt", "fidelity");
    t.power_w = policy_param(j, "ttt", "power_w");
    t.max_delta_ppl = policy_param(j, "ttt", "max_delta_ppl");
    return t;
}

// policy.*: the name (checked against the registry where policies are made) and every policy's parameters;
// prev_batch.alpha in (0, 1], prev_batch.threshold >= 1, energy.relax in [0, 1]. Defaults and their
// sources: src/control/policy/<name>.cpp and docs.
PolicyConfig policy_config(const Json& j) {
    PolicyConfig p;
    p.name = at(j, "policy", "name").get<std::string>();
    p.aux_free.u = policy_param(j, "aux_free", "u");
    p.prev_batch = {policy_param(j, "prev_batch", "alpha"), policy_param(j, "prev_batch", "threshold"),
                    policy_param(j, "prev_batch", "gain")};
    if (!(p.prev_batch.alpha > 0 && p.prev_batch.alpha <= 1))
        bad_value("policy.prev_batch.alpha", j.at("policy").at("prev_batch").at("alpha"), "must be in (0, 1]");
    if (p.prev_batch.threshold < 1)
        bad_value("policy.prev_batch.threshold", j.at("policy").at("prev_batch").at("threshold"), "must be >= 1");
    p.energy = {policy_param(j, "energy", "u"), policy_param(j, "energy", "relax")};
    if (p.energy.relax > 1)
        bad_value("policy.energy.relax", j.at("policy").at("energy").at("relax"), "must be in [0, 1]");
    p.round_robin.strength = policy_param(j, "round_robin", "strength");
    p.random.strength = policy_param(j, "random", "strength");
    p.balanced.strength = policy_param(j, "balanced", "strength");
    p.temperature.t = policy_param(j, "temperature", "t");
    p.ttt = ttt_config(j);
    return p;
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
    const std::vector<std::string> rates = {"bps", "kbps", "Mbps", "Gbps", "Tbps",
                                            "Bps", "kBps", "MBps", "GBps", "TBps"};
    const std::vector<std::string> times = {"s", "ms", "us", "ns"};
    SimulateConfig s;
    s.ranks = static_cast<int>(int_in(j, "simulate", "ranks", 1, 1 << 16));
    s.platform = at(j, "simulate", "platform").get<std::string>();
    const bool file = s.platform.size() > 4 && s.platform.substr(s.platform.size() - 4) == ".xml";
    if (!file && s.platform != "fat-tree" && s.platform != "torus" && s.platform != "dragonfly")
        bad_value("simulate.platform", at(j, "simulate", "platform"),
                  "must be fat-tree, torus, dragonfly or a FILE.xml");
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

ModelConfig model_config(const Json& j) {
    ModelConfig m;
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
    DecoderShape& d = m.decoder;
    d.vocab_size = static_cast<int>(int_in(j, "model", "vocab_size", 2, 1 << 24));
    d.num_heads = static_cast<int>(int_in(j, "model", "num_heads", 1, 1 << 12));
    d.num_kv_heads = static_cast<int>(int_in(j, "model", "num_kv_heads", 1, d.num_heads));
    if (d.num_heads % d.num_kv_heads != 0)
        bad_value("model.num_kv_heads", j.at("model").at("num_kv_heads"),
                  cat("must divide model.num_heads = ", d.num_heads, " (grouped-query attention)"));
    d.head_dim = static_cast<int>(int_in(j, "model", "head_dim", 2, 1 << 12));
    if (d.head_dim % 2 != 0) bad_value("model.head_dim", j.at("model").at("head_dim"), "must be even (RoPE)");
    d.rope_theta = real_in(j, "model", "rope_theta", 0, true);
    d.sliding_window = static_cast<int>(int_in(j, "model", "sliding_window", 0, 1 << 30));
    d.qkv_bias = at(j, "model", "qkv_bias").get<bool>();
    const std::string qk = one_of(j, "model", "qk_norm", {"none", "whole", "per_head"});
    d.qk_norm = qk == "whole" ? QkNorm::kWhole : qk == "per_head" ? QkNorm::kPerHead : QkNorm::kNone;
    d.tie_word_embeddings = at(j, "model", "tie_word_embeddings").get<bool>();
    return m;
}

WorkloadConfig workload_config(const Json& j) {
    WorkloadConfig w;
    w.tokens_per_rank = int_in(j, "workload", "tokens_per_rank", 1, int64_t{1} << 30);
    w.steps = static_cast<int>(int_in(j, "workload", "steps", 1, 1 << 30));
    w.skew = real_in(j, "workload", "skew", 0, false);
    w.drift = real_in(j, "workload", "drift", 0, false);
    w.num_clusters = static_cast<int>(int_in(j, "workload", "num_clusters", 1, 1 << 20));
    w.noise = real_in(j, "workload", "noise", 0, false);
    w.input = at(j, "workload", "input").get<std::string>();
    return w;
}

EnergyConfig energy_config(const Json& j) {
    EnergyConfig e;
    e.source = one_of(j, "energy", "source", {"auto", "rapl", "hwmon", "estimated", "none"});
    e.sysfs_root = at(j, "energy", "sysfs_root").get<std::string>();
    e.sample_hz = real_in(j, "energy", "sample_hz", 0, false);
    if (e.sample_hz > 1000) bad_value("energy.sample_hz", j.at("energy").at("sample_hz"), "must be <= 1000");
    e.power_budget_w = real_in(j, "energy", "power_budget_w", 0, false);
    e.thermal_limit_c = real_in(j, "energy", "thermal_limit_c", 0, false);
    // energy.estimate.*: defaults are order-of-magnitude figures for a recent x86 server socket. pJ/FLOP:
    // ~150 W over ~2 TFLOP/s FP32 peak is ~75 pJ/FLOP all-in, ~30 dynamic; pJ/byte: DRAM at ~15-20 pJ/bit
    // (Horowitz, ISSCC 2014); W/core: ~60 W idle socket / 20 cores.
    auto coefficient = [&](const char* k) {
        const Json& v = j.at("energy").at("estimate").at(k);
        double x = v.get<double>();
        if (!std::isfinite(x) || x < 0) bad_value(cat("energy.estimate.", k), v, "must be finite and >= 0");
        return x;
    };
    e.estimate = {coefficient("pj_per_flop"), coefficient("pj_per_byte"), coefficient("idle_w_per_core")};
    return e;
}

ComputeConfig compute_config(const Json& j) {
    ComputeConfig c;
    c.backend = one_of(j, "compute", "backend", {"auto", "openblas", "onednn", "amx"});
    c.dtype = one_of(j, "compute", "dtype", {"fp32", "bf16"});
    c.pack_weights = one_of(j, "compute", "pack_weights", {"auto", "off"});
    c.overlap_chunks = static_cast<int>(int_in(j, "compute", "overlap_chunks", 1, 64));
    c.weight_panel_kib = static_cast<int>(int_in(j, "compute", "weight_panel_kib", 0, 65536));
    if (c.weight_panel_kib > 0 && c.weight_panel_kib < 64)
        bad_value("compute.weight_panel_kib", j.at("compute").at("weight_panel_kib"), "must be 0 (off) or 64..65536");
    if (c.backend == "openblas" && c.dtype != "fp32")
        bad_value("compute.dtype", j.at("compute").at("dtype"),
                  "compute.backend openblas runs fp32 only (Debian's OpenBLAS has no sbgemm); use onednn or auto");
    return c;
}

OutputConfig output_config(const Json& j) {
    OutputConfig o;
    o.dir = at(j, "output", "dir").get<std::string>();
    o.dump = at(j, "output", "dump").get<std::string>();
    o.quiet = at(j, "output", "quiet").get<bool>();
    o.overwrite = at(j, "output", "overwrite").get<bool>();
    o.progress_interval_s = real_in(j, "output", "progress_interval_s", 0, true);
    return o;
}

TextConfig text_config(const Json& j) {
    TextConfig t;
    t.tokens = at(j, "text", "tokens").get<std::string>();
    t.token_dtype = one_of(j, "text", "token_dtype", {"auto", "uint16", "uint32"});
    t.text = at(j, "text", "text").get<std::string>();
    t.tokenizer = at(j, "text", "tokenizer").get<std::string>();
    t.special_tokens = at(j, "text", "special_tokens").get<bool>();
    if (!t.text.empty() && !t.tokens.empty())
        bad_value("text.text", j.at("text").at("text"), "give text.tokens or text.text, not both");
    if (t.tokenizer.empty()) bad_value("text.tokenizer", j.at("text").at("tokenizer"), "auto, json, sp or a path");
    t.ctx = int_in(j, "text", "ctx", 2, int64_t{1} << 24);
    t.stride = int_in(j, "text", "stride", 0, t.ctx);
    t.batch = static_cast<int>(int_in(j, "text", "batch", 1, 1 << 20));
    t.dump_logits = at(j, "text", "dump_logits").get<std::string>();
    t.synthetic_sequences = static_cast<int>(int_in(j, "text", "synthetic_sequences", 1, 1 << 20));
    t.synthetic_length = static_cast<int>(int_in(j, "text", "synthetic_length", 2, 1 << 24));
    return t;
}

GenerateConfig generate_config(const Json& j) {
    GenerateConfig g;
    g.max_new_tokens = static_cast<int>(int_in(j, "generate", "max_new_tokens", 1, 1 << 24));
    g.temperature = real_in(j, "generate", "temperature", 0, false);
    g.top_p = real_in(j, "generate", "top_p", 0, true);
    if (g.top_p > 1) bad_value("generate.top_p", j.at("generate").at("top_p"), "must be <= 1");
    return g;
}

TrainConfig train_config(const Json& j) {
    TrainConfig t;
    t.steps = static_cast<int>(int_in(j, "train", "steps", 1, 1 << 30));
    t.batch = static_cast<int>(int_in(j, "train", "batch", 1, 1 << 20));
    t.ep_size = static_cast<int>(int_in(j, "train", "ep_size", 0, 1 << 20));  // divides the world: TrainGroups
    t.lr = real_in(j, "train", "lr", 0, false);
    t.min_lr = real_in(j, "train", "min_lr", 0, false);
    if (t.min_lr > t.lr) bad_value("train.min_lr", j.at("train").at("min_lr"), "must be <= train.lr");
    t.warmup_steps =
        static_cast<int>(int_in(j, "train", "warmup_steps", 0, 1 << 30));  // > steps: the run only warms up
    t.weight_decay = real_in(j, "train", "weight_decay", 0, false);
    t.grad_clip = real_in(j, "train", "grad_clip", 0, false);
    t.aux_loss_coef = at(j, "train", "aux_loss_coef").get<double>();
    if (!std::isfinite(t.aux_loss_coef))
        bad_value("train.aux_loss_coef", j.at("train").at("aux_loss_coef"), "must be finite");
    t.z_loss_coef = real_in(j, "train", "z_loss_coef", 0, false);
    t.decay_router = at(j, "train", "decay_router").get<bool>();
    t.data = at(j, "train", "data").get<std::string>();
    t.val_data = at(j, "train", "val_data").get<std::string>();
    t.text = at(j, "train", "text").get<std::string>();
    t.val_text = at(j, "train", "val_text").get<std::string>();
    if (!t.text.empty() && !t.data.empty())
        bad_value("train.text", j.at("train").at("text"), "give train.data or train.text, not both");
    if (!t.val_text.empty() && !t.val_data.empty())
        bad_value("train.val_text", j.at("train").at("val_text"), "give train.val_data or train.val_text, not both");
    t.val_fraction = real_in(j, "train", "val_fraction", 0, true);
    if (t.val_fraction >= 1) bad_value("train.val_fraction", j.at("train").at("val_fraction"), "must be < 1");
    t.val_windows = static_cast<int>(int_in(j, "train", "val_windows", 1, 1 << 20));
    t.eval_every = static_cast<int>(int_in(j, "train", "eval_every", 0, 1 << 30));
    t.save_dir = at(j, "train", "save_dir").get<std::string>();
    t.save_every = static_cast<int>(int_in(j, "train", "save_every", 0, 1 << 30));
    if (t.save_every > 0 && t.save_dir.empty())
        bad_value("train.save_every", j.at("train").at("save_every"), "saves into train.save_dir: give --save DIR");
    t.corpus = at(j, "train", "corpus").get<std::string>();
    t.family = one_of(j, "train", "family", {"mixtral", "olmoe", "qwen2_moe", "qwen3_moe"});
    t.resume = at(j, "train", "resume").get<std::string>();
    t.sampler = one_of(j, "train", "sampler", {"random", "sequential"});
    t.decay_steps = static_cast<int>(int_in(j, "train", "decay_steps", 0, 1 << 30));
    t.dump_grads = at(j, "train", "dump_grads").get<std::string>();
    return t;
}

}  // namespace

Config Config::from_json(const Json& j) {
    Config c;
    c.json = std::make_shared<const Json>(j);
    c.seed = static_cast<uint64_t>(int_in(j, "", "seed", 0, INT64_MAX));
    c.model = model_config(j);
    c.workload = workload_config(j);
    c.routing.capacity_factor = real_in(j, "routing", "capacity_factor", 0, false);
    c.routing.fidelity_sample_every = static_cast<int>(int_in(j, "routing", "fidelity_sample_every", 0, 1 << 30));
    c.policy = policy_config(j);
    c.placement.name = at(j, "placement", "name").get<std::string>();
    c.placement.profile = at(j, "placement", "profile").get<std::string>();
    c.placement.replicas = static_cast<int>(int_in(j, "placement", "replicas", 0, 1 << 16));
    c.energy = energy_config(j);
    c.coordinator_every_n_steps = static_cast<int>(int_in(j, "coordinator", "every_n_steps", 1, 1 << 30));
    c.threads_per_rank = static_cast<int>(int_in(j, "resources", "threads_per_rank", 1, 1024));
    c.expert_threads = one_of(j, "resources", "expert_threads", {"tasks", "gemm"});
    c.bind = one_of(j, "resources", "bind", {"none", "core"});
    c.mpi_wait = one_of(j, "resources", "mpi_wait", {"auto", "block", "yield"});
    c.exchange = one_of(j, "resources", "exchange", {"auto", "shm", "mpi"});
    c.compute = compute_config(j);
    c.inter_host = one_of(j, "resources", "inter_host", {"flat", "two_level"});
    if (c.inter_host == "two_level" && (c.exchange == "shm" || c.compute.overlap_chunks > 1))
        bad_value("resources.inter_host", at(j, "resources", "inter_host"),
                  "moves one chunk through MPI: needs resources.exchange = mpi or auto and compute.overlap_chunks = 1");
    if (c.exchange == "shm" && c.compute.overlap_chunks > 1)
        bad_value("resources.exchange", at(j, "resources", "exchange"),
                  cat("moves one chunk; compute.overlap_chunks = ", c.compute.overlap_chunks,
                      " needs resources.exchange = mpi"));
    c.work_sharing = one_of(j, "resources", "work_sharing", {"auto", "host", "none"});
    if (c.work_sharing == "host" && c.exchange == "mpi")
        bad_value("resources.work_sharing", at(j, "resources", "work_sharing"),
                  "runs other ranks' experts from a shared-memory window: needs resources.exchange = shm or auto");
    c.output = output_config(j);
    c.simulate = simulate_config(j);
    c.text = text_config(j);
    c.generate = generate_config(j);
    c.train = train_config(j);
    return c;
}

}  // namespace epmoe
