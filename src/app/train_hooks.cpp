// The checking hooks of `epmoe train` (train_hooks.hpp): --dump-grads and --sampler sequential.
#include "app/train_hooks.hpp"

#include <cstring>

#include "epmoe/base/error.hpp"
#include "epmoe/base/json.hpp"
#include "epmoe/io/safetensors.hpp"
#include "epmoe/io/tokens.hpp"
#include "epmoe/model/checkpoint_write.hpp"
#include "epmoe/ops/loss.hpp"

namespace epmoe {

void dump_gradients(const mpi::Comm& world, const std::string& path, Family family, const ModelGrads& grads,
                    const TrainLosses& losses) {
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
