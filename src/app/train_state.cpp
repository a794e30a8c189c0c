// epmoe train's optimizer state and trainer_state.json beside a checkpoint, and --resume (train_state.hpp).
#include "app/train_state.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "epmoe/base/error.hpp"
#include "epmoe/io/safetensors.hpp"
#include "epmoe/model/checkpoint_write.hpp"

namespace epmoe {
namespace {

namespace fs = std::filesystem;

const char* const kOptimizerDir = "optimizer";

// True when this rank writes p's moments: it holds p alone, or is rank 0 of p's replicas.
bool first_holder(const Param& p) { return p.replicas == nullptr || p.replicas->rank() == 0; }

TensorToWrite moment_tensor(const std::string& name, std::span<const float> values) {
    return tensor_from_f32(name, {static_cast<int64_t>(values.size())}, values);
}

// Every optimizer file of DIR, opened (headers validated; the data is mapped, read on demand).
std::vector<SafetensorsFile> open_optimizer_files(const fs::path& dir) {
    std::vector<std::string> paths;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir / kOptimizerDir, ec))
        if (e.is_regular_file() && e.path().extension() == ".safetensors") paths.push_back(e.path().string());
    if (ec || paths.empty())
        fail("--resume ", dir.string(), ": no ", kOptimizerDir, "/*.safetensors (AdamW's moments): not a checkpoint ",
             "epmoe train saved");
    std::sort(paths.begin(), paths.end());
    std::vector<SafetensorsFile> files;
    for (const std::string& p : paths) files.push_back(SafetensorsFile::open(p));
    return files;
}

// Copies the F32 [numel] tensor `name` of whichever file holds it into out; fails naming it when none does or
// its size differs.
void read_moment(const std::vector<SafetensorsFile>& files, const std::string& name, std::span<float> out,
                 const std::string& dir) {
    for (const SafetensorsFile& f : files)
        if (const TensorInfo* t = f.find(name)) {
            if (t->numel() != static_cast<int64_t>(out.size()))
                fail("--resume ", dir, ": ", f.path(), " holds ", name, " with ", t->numel(), " values, the model ",
                     out.size(), " (another model?)");
            f.read_f32(*t, out);
            return;
        }
    fail("--resume ", dir, ": no optimizer file holds ", name, " (saved from another model?)");
}

Json read_state_file(const std::string& dir) {
    const std::string path = dir + "/" + kTrainerStateFile;
    std::ifstream in(path);
    if (!in) fail("--resume ", dir, ": no ", kTrainerStateFile, " (not a checkpoint epmoe train saved)");
    Json j = Json::parse(in, nullptr, false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer() || !j.contains("optimizer_steps"))
        fail(path, ": not a trainer state epmoe wrote");
    return j;
}

// Fails naming the key when saved and current differ at the JSON pointer `key`.
void check_same(const Json& saved, const Json& current, const std::string& key, const std::string& dir) {
    const Json::json_pointer ptr(key);
    const Json a = saved.contains(ptr) ? saved.at(ptr) : Json(), b = current.contains(ptr) ? current.at(ptr) : Json();
    if (a != b)
        fail("--resume ", dir, ": ", key.substr(1), " was ", a.dump(), " in the saved run, ", b.dump(),
             " now (give the same to continue it)");
}

}  // namespace

Config resume_config(const mpi::Comm& world, const Config& config) {
    Config out = config;
    mpi::all_or_none(world, [&] {
        const std::string& dir = config.train.resume;
        if (dir.empty()) return;
        if (!config.model.path.empty() && fs::path(config.model.path) != fs::path(dir))
            fail("--resume ", dir, " loads its own weights: give --model ", config.model.path,
                 " or --resume, not both");
        if (!fs::is_regular_file(fs::path(dir) / kTrainerStateFile))
            fail("--resume ", dir, ": no ", kTrainerStateFile, " (not a checkpoint epmoe train saved)");
        out.model.path = dir;
    });
    return out;
}

void check_save_dir(const std::string& dir) {
    std::error_code ec;
    if (!fs::exists(dir, ec)) return;
    if (fs::is_directory(dir, ec) && (fs::is_empty(dir, ec) || fs::is_regular_file(fs::path(dir) / kCheckpointMarker)))
        return;
    fail("--save ", dir, ": exists and is not an epmoe checkpoint (no ", kCheckpointMarker,
         "): refusing to overwrite it; give a new or empty directory");
}

void check_finite_weights(const ParamRegistry& params, int64_t step) {
    for (const Param& p : params.params())
        for (float v : p.value)
            if (!std::isfinite(v))
                fail("epmoe train: step ", step, ": weight ", p.name, " is not finite after the update (", v,
                     "); the last checkpoint written stays as it was");
}

void write_train_state(const std::string& tmp_dir, int rank, int num_ranks, const ParamRegistry& params, AdamW& adamw,
                       const Json& state) {
    const fs::path dir = fs::path(tmp_dir) / kOptimizerDir;
    std::error_code ec;
    fs::create_directories(dir, ec);  // every rank: the first makes it, the others find it
    if (!fs::is_directory(dir)) fail(dir.string(), ": cannot make the folder (", ec.message(), ")");
    std::vector<TensorToWrite> moments;
    for (size_t i = 0; i < params.size(); ++i) {
        if (!first_holder(params[i])) continue;
        moments.push_back(moment_tensor("exp_avg." + params[i].name, adamw.exp_avg(i)));
        moments.push_back(moment_tensor("exp_avg_sq." + params[i].name, adamw.exp_avg_sq(i)));
    }
    char file[64];
    std::snprintf(file, sizeof file, "rank-%05d-of-%05d.safetensors", rank, num_ranks);
    write_safetensors((dir / file).string(), moments, {{"format", "epmoe AdamW moments"}});
    if (rank != 0) return;
    const fs::path path = fs::path(tmp_dir) / kTrainerStateFile;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << state.dump(2) << "\n";
    out.flush();
    if (!out) fail(path.string(), ": cannot write (", errno_text(errno), ")");
}

int64_t resume_train_state(const mpi::Comm& world, const std::string& dir, const Json& current, int64_t steps,
                           const ParamRegistry& params, AdamW& adamw) {
    int64_t step = 0;
    mpi::all_or_none(world, [&] {
        const Json saved = read_state_file(dir);
        for (const char* key : {"/seed", "/data/source", "/data/sampler", "/data/batch", "/data/ctx"})
            check_same(saved, current, key, dir);
        step = saved["step"].get<int64_t>();
        if (step >= steps)
            fail("--resume ", dir, ": the saved run has done ", step, " steps; --steps ", steps,
                 " (the total, counting those) leaves none to run");
        const std::vector<SafetensorsFile> files = open_optimizer_files(dir);
        for (size_t i = 0; i < params.size(); ++i) {
            read_moment(files, "exp_avg." + params[i].name, adamw.exp_avg(i), dir);
            read_moment(files, "exp_avg_sq." + params[i].name, adamw.exp_avg_sq(i), dir);
        }
        adamw.set_steps(saved["optimizer_steps"].get<int64_t>());
    });
    return step;
}

}  // namespace epmoe
