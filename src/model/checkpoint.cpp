// Checkpoint: the files of a Hugging Face MoE checkpoint, the tensors each layer uses, and per-rank
// loading that reads only the norm, gate, shared and dense parts plus the experts a rank owns.
#include "epmoe/model/checkpoint.hpp"

#include <sys/stat.h>

#include <fstream>
#include <set>
#include <sstream>

#include "checkpoint_internal.hpp"
#include "epmoe/base/error.hpp"

namespace epmoe {
namespace {

bool is_dir(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool exists(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0;
}
std::string dir_of(const std::string& file) {
    size_t slash = file.rfind('/');
    return slash == std::string::npos ? "." : file.substr(0, slash);
}

std::string shape_text(const std::vector<int64_t>& shape) {
    std::ostringstream os;
    os << "[";
    for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
    return os.str() + "]";
}

// weight_map of model.safetensors.index.json: tensor name -> shard file name.
std::map<std::string, std::string> read_index(const std::string& index_path) {
    std::ifstream in(index_path);
    if (!in) fail(index_path, ": cannot read");
    Json j;
    try {
        j = Json::parse(in);
    } catch (const Json::parse_error& e) {
        fail(index_path, ": not valid JSON (", e.what(), ")");
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
        fail(index_path, ": missing key 'weight_map' (an object of tensor name -> file)");
    std::map<std::string, std::string> out;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        if (!it.value().is_string() || it.value().get<std::string>().find('/') != std::string::npos)
            fail(index_path, ": weight_map entry '", it.key(), "' must name a file in the same directory");
        out[it.key()] = it.value().get<std::string>();
    }
    return out;
}

// Every tensor (or fused slice) layers [first, last] use on a rank owning the experts with owns(e), in
// reading order.
std::vector<checkpoint_detail::TensorSpec> used_specs(const CheckpointInfo& info, int first, int last,
                                                      const std::function<bool(int)>& owns) {
    std::vector<checkpoint_detail::TensorSpec> out;
    for (int l = first; l <= last; ++l)
        for (auto& t : checkpoint_detail::layer_tensors(info, l, owns)) out.push_back(std::move(t));
    return out;
}

}  // namespace

std::string CheckpointInfo::mlp_prefix(int index) const {
    return cat("model.layers.", index, ".", layers[index].module, ".");
}

std::pair<int, int> parse_layer_range(const std::string& text, int num_layers) {
    if (text.empty()) return {0, num_layers - 1};
    int a = -1, b = -1;
    char tail = 0;
    int n = std::sscanf(text.c_str(), "%d-%d%c", &a, &b, &tail);
    if (n == 1 && text.find('-') == std::string::npos) b = a, n = 2;
    if (n != 2 || a < 0 || b < a) fail("model.layers = \"", text, "\": expected A-B with 0 <= A <= B (e.g. 0-3)");
    if (b >= num_layers)
        fail("model.layers = \"", text, "\": the checkpoint has ", num_layers, " layers (0-", num_layers - 1, ")");
    return {a, b};
}

Checkpoint Checkpoint::open(const std::string& path, const ModelConfig& model) {
    Checkpoint ck;
    CheckpointInfo& info = ck.info_;
    info.path = path;
    const bool dir = is_dir(path);
    const std::string base = dir ? path : dir_of(path);
    const std::string index = base + "/model.safetensors.index.json";
    if (dir && exists(index)) {
        for (const auto& [name, file] : read_index(index)) {
            std::string full = base + "/" + file;
            info.weight_map[name] = full;
            if (std::find(info.files.begin(), info.files.end(), full) == info.files.end()) info.files.push_back(full);
        }
    } else {
        std::string file = dir ? base + "/model.safetensors" : path;
        if (dir && !exists(file)) fail(path, ": no model.safetensors or model.safetensors.index.json");
        info.files.push_back(file);
    }
    for (const auto& file : info.files)
        ck.files_[file] = std::make_unique<SafetensorsFile>(SafetensorsFile::open(file));
    if (info.weight_map.empty())
        for (const auto& t : ck.files_.begin()->second->tensors()) info.weight_map[t.name] = info.files[0];
    const std::string config = base + "/config.json";
    if (dir || exists(config))
        checkpoint_detail::apply_hf_config(config, info);
    else
        checkpoint_detail::apply_model_config(model, info);
    ck.check_tensors();
    return ck;
}

std::pair<const SafetensorsFile*, const TensorInfo*> Checkpoint::find(const std::string& name) const {
    auto it = info_.weight_map.find(name);
    if (it == info_.weight_map.end()) {
        bool sharded = info_.files.size() > 1 || info_.files[0] != info_.path + "/model.safetensors";
        std::string where =
            is_dir(info_.path) && sharded ? info_.path + "/model.safetensors.index.json" : info_.files[0];
        fail(where, ": missing tensor ", name, " (needed by ", info_.config_path, ")");
    }
    const SafetensorsFile& file = *files_.at(it->second);
    return {&file, &file.at(name)};  // at() names the shard if the index points at the wrong file
}

void Checkpoint::require_decoder() {
    if (info_.config_path.rfind("/config.json") == std::string::npos)
        fail(info_.path, ": the whole model needs the checkpoint's config.json (attention and vocabulary sizes)");
    checkpoint_detail::apply_decoder_config(info_.config_path, info_);
    for (const auto& want : checkpoint_detail::decoder_tensors(info_, 0, info_.shape.num_layers - 1))
        check_tensor(want.name, want.shape);
}

void Checkpoint::check_tensor(const std::string& name, const std::vector<int64_t>& shape) const {
    auto [file, t] = find(name);
    if (!is_float_dtype(t->dtype))
        fail(file->path(), ": tensor ", name, " has dtype ", t->dtype, "; expected F32, BF16 or F16");
    if (t->shape != shape)
        fail(file->path(), ": tensor ", name, " has shape ", shape_text(t->shape), ", expected ", shape_text(shape),
             " from ", info_.config_path);
}

void Checkpoint::check_tensors() const {
    const auto all = [](int) { return true; };
    for (const auto& want : used_specs(info_, 0, info_.shape.num_layers - 1, all)) check_tensor(want.name, want.shape);
}

uint64_t Checkpoint::bytes_converted() const {
    uint64_t bytes = 0;
    for (const auto& [path, file] : files_) bytes += file->bytes_converted();
    return bytes;
}

std::vector<std::string> Checkpoint::used_tensors(int first, int last, const std::function<bool(int)>& owns) const {
    std::vector<std::string> names;
    std::set<std::string> seen;  // a fused tensor is read once per owned expert: list it once
    for (const auto& t : used_specs(info_, first, last, owns))
        if (seen.insert(t.name).second) names.push_back(t.name);
    return names;
}

uint64_t Checkpoint::shard_bytes(int first, int last, const std::function<bool(int)>& owns) const {
    uint64_t bytes = 0;
    for (const auto& t : used_specs(info_, first, last, owns))
        bytes += static_cast<uint64_t>(t.numel()) * dtype_size(find(t.name).second->dtype);
    return bytes;
}

uint64_t Checkpoint::shard_floats(int first, int last, const std::function<bool(int)>& owns) const {
    uint64_t floats = 0;
    for (const auto& t : used_specs(info_, first, last, owns)) floats += static_cast<uint64_t>(t.numel());
    return floats;
}

uint64_t Checkpoint::total_bytes() const {
    uint64_t bytes = 0;
    for (const auto& [path, file] : files_)
        for (const auto& t : file->tensors()) bytes += t.nbytes();
    return bytes;
}

std::map<std::string, int> Checkpoint::dtype_counts() const {
    std::map<std::string, int> counts;
    for (const auto& [path, file] : files_)
        for (const auto& t : file->tensors()) ++counts[std::string(dtype_name(t.dtype))];
    return counts;
}

}  // namespace epmoe
