#include "epmoe/base/json.hpp"

#include <filesystem>
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
    "gate": "softmax", "norm_topk_prob": true, "rms_norm_eps": 1e-6,
    "vocab_size": 1024, "num_heads": 8, "num_kv_heads": 4, "head_dim": 64, "rope_theta": 10000.0,
    "sliding_window": 0, "qkv_bias": false, "qk_norm": "none", "tie_word_embeddings": false
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
    "temperature": {"t": 0.05},
    "ttt": {"rank": 4, "lr": 0.01, "iters": 2, "balance": 10.0, "energy": 0.1, "fidelity": 1.0, "power_w": 0.0,
            "max_delta_ppl": 0.01, "check_every": 8, "holdout_windows": 4, "sample_every": 2}
  },
  "placement": {"name": "contiguous", "profile": "", "replicas": 2},
  "energy": {
    "source": "auto", "sysfs_root": "/sys", "sample_hz": 10.0, "power_budget_w": 0.0, "thermal_limit_c": 0.0,
    "estimate": {"pj_per_flop": 30.0, "pj_per_byte": 150.0, "idle_w_per_core": 3.0}
  },
  "coordinator": {"every_n_steps": 1},
  "resources": {"threads_per_rank": 1, "expert_threads": "tasks", "bind": "none", "mpi_wait": "auto",
                "exchange": "auto", "inter_host": "flat",
                "work_sharing": "auto"},
  "compute": {"backend": "auto", "dtype": "fp32", "pack_weights": "auto", "weight_panel_kib": 0, "overlap_chunks": 1},
  "output": {"dir": "", "dump": "", "quiet": false, "overwrite": false, "progress_interval_s": 5.0},
  "text": {
    "tokens": "", "token_dtype": "auto", "text": "", "tokenizer": "auto", "special_tokens": true, "ctx": 512, "stride": 0, "batch": 1, "dump_logits": "",
    "synthetic_sequences": 8, "synthetic_length": 128
  },
  "generate": {"max_new_tokens": 16, "temperature": 0.0, "top_p": 1.0},
  "train": {
    "steps": 300, "batch": 16, "ep_size": 0, "lr": 0.003, "min_lr": 0.0003, "warmup_steps": 20, "weight_decay": 0.1,
    "grad_clip": 1.0, "aux_loss_coef": -1.0, "z_loss_coef": 0.0, "decay_router": false, "data": "", "val_data": "",
    "text": "", "val_text": "",
    "val_fraction": 0.05, "val_windows": 32, "eval_every": 50, "save_dir": "", "save_every": 0,
    "corpus": "/usr/share/games/fortunes", "family": "mixtral", "resume": "", "sampler": "random", "decay_steps": 0,
    "dump_grads": ""
  },
  "simulate": {
    "ranks": 16, "platform": "fat-tree", "bandwidth": "100Gbps", "latency": "1us", "ranks_per_node": 4,
    "gflops_per_core": 0.0, "loopback_bandwidth": "8GBps", "loopback_latency": "1us",
    "binary": "", "smpirun": "smpirun"
  }
})";

std::string type_name(const Json& j) {
    if (j.is_boolean()) return "a boolean";
    if (j.is_number_integer()) return "an integer";
    if (j.is_number()) return "a finite number";
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
        if (slot.is_object())
            merge_at(slot, it.value(), source, key);
        else
            slot = it.value();
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
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) fail(path, ": is a directory, not a JSON config file");
    std::ifstream in(path);
    if (!in) fail(path, ": cannot read config file");
    try {
        return Json::parse(in);
    } catch (const Json::parse_error& e) {
        fail(path, ": not valid JSON (", e.what(), ")");
    }
}

}  // namespace epmoe
