// write_checkpoint (include/epmoe/model/checkpoint_write.hpp): every rank's tensors, named through the same
// tensor lists the loader reads (layer_tensors, decoder_tensors), into its own safetensors shard under a
// temporary directory; rank 0 adds config.json, the index and the marker, and renames the directory once every
// rank has written. Each step that may fail locally runs inside mpi::all_or_none.
#include "epmoe/model/checkpoint_write.hpp"

#include <fcntl.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "checkpoint_internal.hpp"
#include "epmoe/base/error.hpp"

namespace epmoe {
namespace {

namespace fs = std::filesystem;
using checkpoint_detail::Matrix;
using checkpoint_detail::Mlp;
using checkpoint_detail::TensorSpec;

// For each (layer, expert), [num_layers, num_experts]: the lowest rank that holds the expert, which writes it,
// or INT_MAX when no rank does. Collective over comm.
std::vector<int32_t> expert_writers(const mpi::Comm& comm, const Model& model) {
    const int num_experts = model.shape.num_experts;
    std::vector<int32_t> writer(model.layers.size() * static_cast<size_t>(num_experts), INT_MAX);
    for (size_t l = 0; l < model.layers.size(); ++l)
        for (const auto& [e, w] : model.layers[l].experts) writer[l * num_experts + e] = comm.rank();
    mpi::allreduce(comm, std::span<int32_t>(writer), mpi::Op::kMin);
    return writer;
}

// The floats of the MLP matrix t (W1, W3 or W2 of an expert, a dense or a shared MLP) in `layer`.
std::span<const float> mlp_source(const MoeLayer& layer, const TensorSpec& t) {
    const ExpertWeights& w = t.mlp == Mlp::kExpert  ? layer.experts.at(t.expert)
                             : t.mlp == Mlp::kDense ? layer.dense->w
                                                    : layer.shared_expert->w;
    const size_t n = static_cast<size_t>(t.numel());  // W1 and W3: d_ff x d_model each; W2: d_model x d_ff
    const std::vector<float>& source = t.matrix == Matrix::kW2 ? w.w2 : w.w13;
    if (source.size() != (t.matrix == Matrix::kW2 ? n : 2 * n))
        fail("tensor ", t.name, ": the MLP holds ", source.size(), " floats, not ", t.matrix == Matrix::kW2 ? n : 2 * n,
             " (weights kept only in the kernel's own form, e.g. compute.dtype bf16, cannot be written)");
    return std::span<const float>(source).subspan(t.matrix == Matrix::kW3 ? n : 0, n);
}

// The floats of tensor t of layer `l` or of the decoder.
std::span<const float> source_of(const Model& model, const DecoderWeights& decoder, const TensorSpec& t, int l) {
    const MoeLayer& layer = model.layers[static_cast<size_t>(l)];
    switch (t.matrix) {
        case Matrix::kNorm:
            return layer.norm;
        case Matrix::kRouter:
            return layer.gate;
        case Matrix::kSharedGate:
            return layer.shared_expert_gate;
        case Matrix::kDecoder:
            return checkpoint_detail::decoder_slot(decoder, t);
        case Matrix::kW13:  // never listed: the writer lays experts out one by one
            EPMOE_ASSERT(false);
            break;
        default:
            break;
    }
    return mlp_source(layer, t);
}

// This rank's tensors: its experts; on rank 0 also every replicated tensor.
std::vector<TensorToWrite> rank_tensors(const mpi::Comm& comm, const CheckpointInfo& info, const Model& model,
                                        const DecoderWeights& decoder, const std::vector<int32_t>& writer) {
    std::vector<TensorToWrite> out;
    auto add = [&](const TensorSpec& t, int l) {
        const std::span<const float> values = source_of(model, decoder, t, l);
        if (static_cast<int64_t>(values.size()) != t.numel())
            fail("tensor ", t.name, " holds ", values.size(), " floats, its shape ", t.numel());
        out.push_back(tensor_from_f32(t.name, t.shape, values));
    };
    const int num_experts = model.shape.num_experts;
    for (int l = 0; l < model.shape.num_layers; ++l) {
        auto mine = [&](int e) { return writer[static_cast<size_t>(l) * num_experts + e] == comm.rank(); };
        for (const TensorSpec& t : checkpoint_detail::layer_tensors(info, l, mine))
            if (t.mlp == Mlp::kExpert || comm.rank() == 0) add(t, l);
    }
    if (comm.rank() == 0)
        for (const TensorSpec& t : checkpoint_detail::decoder_tensors(info, 0, model.shape.num_layers - 1))
            add(t, t.layer);
    return out;
}

bool has_marker(const fs::path& dir) { return fs::is_regular_file(dir / kCheckpointMarker); }

// Writes text to path (through path.tmp, renamed), failing naming the path.
void write_text(const fs::path& path, const std::string& text) {
    const fs::path tmp = path.string() + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << text;
        out.flush();
        if (!out) fail(tmp.string(), ": cannot write (", errno_text(errno), ")");
    }
    fs::rename(tmp, path);
}

// Removes an epmoe checkpoint directory, its marker last: a removal cut short (a killed job) leaves a directory
// still marked, which the next prepare removes in turn.
void remove_checkpoint(const fs::path& dir) {
    for (const fs::directory_entry& entry : fs::directory_iterator(dir))
        if (entry.path().filename() != kCheckpointMarker) fs::remove_all(entry.path());
    fs::remove_all(dir);
}

// Rank 0, before any shard: refuses a `dir` that is neither absent, empty nor an epmoe checkpoint; clears a
// temporary directory a killed run left; makes the temporary directory with its marker.
void prepare(const fs::path& dir, const fs::path& tmp, Family family, int ranks) {
    if (fs::exists(dir) && !(fs::is_directory(dir) && (fs::is_empty(dir) || has_marker(dir))))
        fail(dir.string(), ": exists and is not an epmoe checkpoint (no ", kCheckpointMarker,
             "): refusing to overwrite it");
    if (fs::exists(tmp)) {
        if (!fs::is_directory(tmp) || !(fs::is_empty(tmp) || has_marker(tmp)))
            fail(tmp.string(), ": exists and is not an unfinished epmoe checkpoint: refusing to remove it");
        remove_checkpoint(tmp);
    }
    fs::create_directories(tmp);
    const Json marker = {{"writer", "epmoe"}, {"family", family_name(family)}, {"ranks", ranks}};
    write_text(tmp / kCheckpointMarker, marker.dump(2) + "\n");
}

// tmp takes dir's place, where dir holds an older checkpoint: in one atomic step (renameat2's RENAME_EXCHANGE, then
// the old one, now at tmp, removed), so that dir holds a whole checkpoint at every instant; where the filesystem
// has no exchange (EINVAL), the old one moves aside to dir.old first and is removed last.
void replace(const fs::path& dir, const fs::path& tmp) {
    if (renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) == 0) {
        remove_checkpoint(tmp);
        return;
    }
    if (errno != EINVAL && errno != ENOSYS)
        throw fs::filesystem_error("cannot exchange it with " + tmp.string(), dir,
                                   std::error_code(errno, std::generic_category()));
    const fs::path old = dir.string() + ".old";
    if (fs::exists(old)) {
        if (!has_marker(old)) fail(old.string(), ": exists and is not an epmoe checkpoint: refusing to remove it");
        remove_checkpoint(old);
    }
    fs::rename(dir, old);
    fs::rename(tmp, dir);
    remove_checkpoint(old);
}

// Rank 0, after every shard: config.json, the index, then tmp renamed to dir (replace, where dir exists).
void publish(const fs::path& dir, const fs::path& tmp, const CheckpointInfo& info,
             const CheckpointWriteOptions& options, const std::vector<std::string>& names_by_rank,
             const std::vector<std::string>& files_by_rank, uint64_t total_bytes) {
    const nlohmann::json config = nlohmann::json::parse(checkpoint_detail::hf_config_for(info, options).dump());
    write_text(tmp / "config.json", config.dump(2) + "\n");  // keys sorted, as transformers writes them
    nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", nlohmann::json::object()}};
    for (size_t r = 0; r < names_by_rank.size(); ++r) {
        size_t begin = 0;
        for (size_t end; begin < names_by_rank[r].size(); begin = end + 1) {
            end = std::min(names_by_rank[r].find('\n', begin), names_by_rank[r].size());
            index["weight_map"][names_by_rank[r].substr(begin, end - begin)] = files_by_rank[r];
        }
    }
    write_text(tmp / "model.safetensors.index.json", index.dump(2) + "\n");
    if (fs::exists(dir))
        replace(dir, tmp);
    else
        fs::rename(tmp, dir);
}

// Runs fn on every rank as mpi::all_or_none does, turning a filesystem_error into an Error naming its path.
void agreed(const mpi::Comm& comm, const std::function<void()>& fn) {
    mpi::all_or_none(comm, [&] {
        try {
            fn();
        } catch (const fs::filesystem_error& e) {
            fail(e.path1().string(), ": ", e.code().message());
        }
    });
}

}  // namespace

void write_checkpoint(const mpi::Comm& comm, const std::string& dir_name, Family family, const Model& model,
                      const DecoderWeights& decoder, const CheckpointWriteOptions& options) {
    std::string trimmed = dir_name;  // "ckpt/" -> "ckpt", so that the temporary name is "ckpt.tmp"
    while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
    const fs::path dir = trimmed;
    const fs::path tmp = dir.string() + ".tmp";
    CheckpointInfo info;
    agreed(comm, [&] { info = checkpoint_detail::info_for_writing(family, model, decoder); });
    const std::vector<int32_t> writer = expert_writers(comm, model);
    agreed(comm, [&] {
        for (size_t i = 0; i < writer.size(); ++i)
            if (writer[i] == INT_MAX && info.layers[i / model.shape.num_experts].moe)
                fail("expert ", i % model.shape.num_experts, " of layer ", i / model.shape.num_experts,
                     " is held by no rank: nothing to write it from");
        if (comm.rank() == 0) prepare(dir, tmp, family, comm.size());
    });
    std::vector<TensorToWrite> mine;
    agreed(comm, [&] { mine = rank_tensors(comm, info, model, decoder, writer); });
    // Shards are numbered over the ranks that have tensors to write, in rank order.
    std::vector<int32_t> has_tensors(comm.size(), 0);
    has_tensors[comm.rank()] = mine.empty() ? 0 : 1;
    mpi::allreduce(comm, std::span<int32_t>(has_tensors), mpi::Op::kSum);
    int shard = 0, shards = 0;
    for (int r = 0; r < comm.size(); ++r) (r < comm.rank() ? shard : shards) += has_tensors[r];
    shards += shard;
    char file[64];
    std::snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", shard + 1, shards);
    std::string names;
    uint64_t bytes = 0;
    for (const TensorToWrite& t : mine) {
        names += (names.empty() ? "" : "\n") + t.name;
        bytes += t.bytes.size();
    }
    agreed(comm, [&] {
        if (!mine.empty()) write_safetensors((tmp / file).string(), mine);
    });
    mine.clear();
    const std::vector<std::string> names_by_rank = mpi::allgather_strings(comm, names);
    const std::vector<std::string> files_by_rank = mpi::allgather_strings(comm, file);
    const uint64_t total = mpi::allreduce_one(comm, bytes, mpi::Op::kSum);
    if (options.write_extra) agreed(comm, [&] { options.write_extra(tmp.string()); });
    agreed(comm, [&] {
        if (comm.rank() == 0) publish(dir, tmp, info, options, names_by_rank, files_by_rank, total);
    });
}

std::vector<TensorToWrite> checkpoint_tensors(const mpi::Comm& comm, Family family, const Model& model,
                                              const DecoderWeights& decoder) {
    CheckpointInfo info;
    agreed(comm, [&] { info = checkpoint_detail::info_for_writing(family, model, decoder); });
    const std::vector<int32_t> writer = expert_writers(comm, model);
    std::vector<TensorToWrite> mine;
    agreed(comm, [&] { mine = rank_tensors(comm, info, model, decoder, writer); });
    return mine;
}

}  // namespace epmoe
