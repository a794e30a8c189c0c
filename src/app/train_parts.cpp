#include "app/train_parts.hpp"

#include <cstdio>
#include <filesystem>

#include "app/version.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/io/safetensors.hpp"
#include "epmoe/ops/loss.hpp"

namespace epmoe {

double aux_coef(const Config& config, Family family) {
    if (config.train.aux_loss_coef >= 0) return config.train.aux_loss_coef;
    if (config.model.path.empty()) return 0.01;
    std::ifstream in(config.model.path + "/config.json");
    const Json j = in ? Json::parse(in, nullptr, false) : Json();
    if (j.is_object() && j.contains("router_aux_loss_coef") && j["router_aux_loss_coef"].is_number())
        return j["router_aux_loss_coef"].get<double>();
    return family == Family::kOlmoe ? 0.01 : 0.001;
}

Family family_of(const std::string& name) {
    for (Family f : {Family::kMixtral, Family::kOlmoe, Family::kQwen2Moe, Family::kQwen3Moe})
        if (std::string(family_name(f)) == name) return f;
    fail("train.family ", name, ": not a family");
}

namespace {

// One forward of `windows` (possibly none: a rank out of windows still joins the group's collective step); adds
// the summed NLL of their targets and their number to sums.
void validation_forward(const mpi::Comm& ep, const Model& model, DecoderForward& forward,
                        std::span<const TrainSequence> windows, std::span<const float> biases,
                        std::vector<float>& logits, double sums[2]) {
    std::vector<SequenceCache> caches(windows.size(), make_sequence_cache(model.shape.num_layers));
    std::vector<SequenceChunk> chunks;
    int64_t n = 0;
    for (size_t i = 0; i < windows.size(); ++i) {
        chunks.push_back({windows[i].ids, &caches[i]});
        n += static_cast<int64_t>(windows[i].ids.size());
    }
    const int64_t first = mpi::exscan_sum<int64_t>(ep, std::span<const int64_t>(&n, 1))[0];
    forward.step(ep, chunks, LogitRows::kAll, first, mpi::allreduce_one<int64_t>(ep, n, mpi::Op::kSum), biases, logits);
    const size_t vocab = static_cast<size_t>(model.shape.decoder.vocab_size);
    size_t row = 0;
    for (const TrainSequence& w : windows)
        for (size_t t = 0; t < w.ids.size(); ++t, ++row) {
            sums[0] += token_nll(std::span<const float>(logits).subspan(row * vocab, vocab), w.targets[t]);
            sums[1] += 1;
        }
}

}  // namespace

double validation_loss(const TrainGroups& groups, const Model& model, DecoderForward& forward,
                       const std::vector<TrainSequence>& windows, std::span<const float> biases) {
    // Consecutive windows of at most kRows rows a forward (one window at least), so that one forward's [rows,
    // vocab] logits stay bounded (32 windows of 512 tokens with a 151,936-entry vocabulary would be 10 GB at once).
    constexpr int64_t kRows = 1024;
    std::vector<size_t> bounds = {0};
    int64_t rows = 0;
    for (size_t i = 0; i < windows.size(); ++i) {
        const int64_t len = static_cast<int64_t>(windows[i].ids.size());
        if (i > bounds.back() && rows + len > kRows) bounds.push_back(i), rows = 0;
        rows += len;
    }
    if (!windows.empty()) bounds.push_back(windows.size());
    // Every rank of the expert-parallel group runs as many forwards as the rank with the most (the step is
    // collective over the group); a rank out of windows runs empty ones.
    const mpi::Comm &world = groups.world(), &ep = groups.ep();
    const int64_t mine = static_cast<int64_t>(bounds.size()) - 1;
    const int64_t forwards = mpi::allreduce_one<int64_t>(ep, mine, mpi::Op::kMax);
    const std::span<const TrainSequence> all(windows);
    std::vector<float> logits;
    double sums[2] = {0, 0};
    for (int64_t f = 0; f < forwards; ++f) {
        const size_t begin = f < mine ? bounds[static_cast<size_t>(f)] : windows.size();
        const size_t end = f < mine ? bounds[static_cast<size_t>(f) + 1] : windows.size();
        validation_forward(ep, model, forward, all.subspan(begin, end - begin), biases, logits, sums);
    }
    mpi::allreduce<double>(world, sums, mpi::Op::kSum);
    return sums[0] / sums[1];
}

double train_flops_per_token(const ModelShape& s) {
    const DecoderShape& d = s.decoder;
    const double attention = static_cast<double>(s.d_model) * d.head_dim * 2.0 * (d.num_heads + d.num_kv_heads);
    const double moe = static_cast<double>(s.d_model) * s.num_experts + s.top_k * 3.0 * s.d_model * s.d_ff;
    return 6.0 * (s.num_layers * (attention + moe) + static_cast<double>(d.vocab_size) * s.d_model);
}

void TrainLog::write_val_tokens(Json& summary, const std::vector<int32_t>& tokens, int64_t ctx) {
    write_safetensors(writer_->stage("val_tokens.safetensors"),
                      {tensor_from_i32("input_ids", {static_cast<int64_t>(tokens.size())}, tokens)},
                      {{"format", "epmoe train's validation windows: ctx + 1 tokens from every multiple of ctx"}});
    const std::string path = (std::filesystem::path(dir_) / "val_tokens.safetensors").string();
    summary["val_tokens"] = path;
    summary["eval_check"] = config_.train.save_dir.empty()
                                ? Json(nullptr)
                                : Json(cat("epmoe eval --model ", config_.train.save_dir, " --tokens ", path, " --ctx ",
                                           ctx + 1, " --stride ", ctx));
}

Json load_rows(const std::vector<double>& load, int num_experts) {
    Json rows = Json::array();
    for (size_t i = 0; i + static_cast<size_t>(num_experts) <= load.size(); i += static_cast<size_t>(num_experts))
        rows.push_back(std::vector<int64_t>(load.begin() + static_cast<std::ptrdiff_t>(i),
                                            load.begin() + static_cast<std::ptrdiff_t>(i) + num_experts));
    return rows;
}

}  // namespace epmoe
