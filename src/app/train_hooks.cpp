// The checking hooks of `epmoe train` (train_hooks.hpp): --dump-grads and --sampler sequential.
#include "app/train_hooks.hpp"

#include <cstring>
#include <unordered_map>

#include "epmoe/base/error.hpp"
#include "epmoe/base/json.hpp"
#include "epmoe/io/safetensors.hpp"
#include "epmoe/io/tokens.hpp"
#include "epmoe/model/checkpoint_write.hpp"
#include "epmoe/ops/loss.hpp"

namespace epmoe {
namespace {

// The MoE module prefix the writer gave layer l ("model.layers.{l}.<module>."), found by its router, or "".
std::string written_moe_prefix(const std::vector<TensorToWrite>& tensors, const Arch& a, int l) {
    for (const char* module : a.moe_modules) {
        if (module == nullptr) continue;
        const std::string prefix = cat("model.layers.", l, ".", module, ".");
        for (const TensorToWrite& t : tensors)
            if (t.name == prefix + a.router) return prefix;
    }
    return "";
}

// Replaces the per-expert tensors under moe + "experts.{e}." by the fused pair: fused_w13 [E, 2 d_ff, d] (each
// expert's W1 rows then its W3 rows) and fused_w2 [E, d, d_ff], as transformers 5 holds them.
void fuse_experts(std::vector<TensorToWrite>& tensors, const std::string& moe, const Arch& a, int num_experts) {
    std::unordered_map<std::string, size_t> index;
    for (size_t i = 0; i < tensors.size(); ++i) index[tensors[i].name] = i;
    auto expert = [&](int e, const char* matrix) -> TensorToWrite& {
        const auto it = index.find(cat(moe, "experts.", e, ".", matrix));
        EPMOE_ASSERT(it != index.end());
        return tensors[it->second];
    };
    const int64_t d_ff = expert(0, a.expert.w1).shape[0], d_model = expert(0, a.expert.w1).shape[1];
    TensorToWrite w13{
        .name = cat(moe, "experts.", a.fused_w13), .shape = {num_experts, 2 * d_ff, d_model}, .bytes = {}};
    TensorToWrite w2{.name = cat(moe, "experts.", a.fused_w2), .shape = {num_experts, d_model, d_ff}, .bytes = {}};
    for (int e = 0; e < num_experts; ++e)
        for (auto [to, matrix] : {std::pair{&w13, a.expert.w1}, {&w13, a.expert.w3}, {&w2, a.expert.w2}}) {
            TensorToWrite& from = expert(e, matrix);
            to->bytes.insert(to->bytes.end(), from.bytes.begin(), from.bytes.end());
            from.name.clear();  // taken
        }
    std::erase_if(tensors, [](const TensorToWrite& t) { return t.name.empty(); });
    tensors.push_back(std::move(w13));
    tensors.push_back(std::move(w2));
}

// Names the MoE blocks' tensors as the source checkpoint does: its module (Mixtral's block_sparse_moe, or mlp
// in transformers 5's runtime layout) and, where its experts are fused, the fused pair in place of each expert's.
void name_as_source(std::vector<TensorToWrite>& tensors, const CheckpointInfo& source) {
    const Arch& a = arch_of(source.family);
    for (int l = 0; l < static_cast<int>(source.layers.size()); ++l) {
        if (!source.layers[l].moe) continue;
        const std::string from = written_moe_prefix(tensors, a, l), to = source.mlp_prefix(l);
        if (from.empty()) continue;
        if (source.layers[l].fused_experts) fuse_experts(tensors, from, a, source.shape.num_experts);
        for (TensorToWrite& t : tensors)
            if (t.name.starts_with(from)) t.name = to + t.name.substr(from.size());
    }
}

}  // namespace

void dump_gradients(const mpi::Comm& world, const std::string& path, Family family, const CheckpointInfo* source,
                    const ModelGrads& grads, const TrainLosses& losses) {
    // This rank's tensors (named as a checkpoint names them), sent to rank 0 as a header and their floats.
    std::vector<TensorToWrite> mine = checkpoint_tensors(world, family, grads.model, grads.decoder);
    Json head = Json::array();
    std::vector<float> values;
    for (const TensorToWrite& t : mine) {
        head.push_back({{"name", t.name}, {"shape", t.shape}});
        const size_t begin = values.size();
        values.resize(begin + t.bytes.size() / sizeof(float));
        std::memcpy(values.data() + begin, t.bytes.data(), t.bytes.size());
    }
    mine.clear();
    const std::vector<std::string> heads = mpi::allgather_strings(world, head.dump());
    const std::vector<float> all = mpi::gatherv_to_root<float>(world, values);  // rank order
    mpi::all_or_none(world, [&] {
        if (world.rank() != 0) return;
        std::vector<TensorToWrite> tensors;
        size_t offset = 0;
        for (const std::string& h : heads)
            for (const Json& t : Json::parse(h)) {
                const std::vector<int64_t> shape = t["shape"].get<std::vector<int64_t>>();
                size_t n = 1;
                for (int64_t d : shape) n *= static_cast<size_t>(d);
                EPMOE_ASSERT(offset + n <= all.size());
                tensors.push_back(tensor_from_f32(t["name"].get<std::string>(), shape,
                                                  std::span<const float>(all).subspan(offset, n)));
                offset += n;
            }
        if (source != nullptr) name_as_source(tensors, *source);
        const float lm = static_cast<float>(losses.lm), aux = static_cast<float>(losses.aux);
        tensors.push_back(tensor_from_f32("lm_loss", {1}, std::span<const float>(&lm, 1)));
        tensors.push_back(tensor_from_f32("aux_loss", {1}, std::span<const float>(&aux, 1)));
        write_safetensors(path, tensors, {{"format", "epmoe gradients of the first step, before clipping"}});
    });
}

std::vector<TrainSequence> sequential_batch(const std::vector<int32_t>& stream, int64_t ctx, int batch, int64_t step,
                                            int rank, int num_ranks) {
    const int64_t rows = static_cast<int64_t>(stream.size()) / ctx;
    EPMOE_ASSERT(rows >= 1);
    const IndexRange mine = split_over_ranks(batch, rank, num_ranks);
    std::vector<TrainSequence> out;
    for (int64_t b = mine.begin; b < mine.end; ++b) {
        const int64_t row = (step * batch + b) % rows;
        TrainSequence& q = out.emplace_back();
        q.ids.assign(stream.begin() + row * ctx, stream.begin() + (row + 1) * ctx);  // [ctx]
        q.targets.assign(q.ids.begin() + 1, q.ids.end());                            // [ctx]: labels shifted
        q.targets.push_back(kIgnoreIndex);
    }
    return out;
}

std::vector<TrainSequence> step_batch(const TrainData& data, const Config& config, int64_t step, int rank,
                                      int num_ranks) {
    const TrainConfig& t = config.train;
    if (t.sampler == "sequential") return sequential_batch(data.train, config.text.ctx, t.batch, step, rank, num_ranks);
    return sample_batch(data.train, config.text.ctx, t.batch, config.seed, step, rank, num_ranks);
}

void check_sequential_data(const Config& config, int vocab_size) {
    const TrainConfig& t = config.train;
    if (t.sampler != "sequential" || t.data.empty()) return;
    const TokenShape shape = token_file_shape(t.data, vocab_size, config.text.token_dtype);
    if (!shape.is_stream && shape.seq_len != config.text.ctx)
        fail("--sampler sequential: ", t.data, " holds rows of ", shape.seq_len, " tokens; give --ctx ", shape.seq_len,
             " (it is ", config.text.ctx, ")");
}

}  // namespace epmoe
