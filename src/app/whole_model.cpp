#include "app/whole_model.hpp"

#include <cstdio>

namespace epmoe {

namespace {

// Each layer's attention projections (pack_projections) and the LM head packed for oneDNN's brgemm where the CPU
// allows (PackedLinear), whole, or split over the ranks by vocabulary (ShardedHead) where shard_head and the
// world has several ranks; the head's FP32 copy is then dropped (nothing else reads it here; a tied head is the
// embedding table, which stays).
InferenceHead pack_for_inference(const mpi::Comm& world, DecoderWeights& decoder, const ModelShape& shape,
                                 bool shard_head) {
    for (AttentionWeights& layer : decoder.layers) pack_projections(layer, shape.d_model, shape.decoder);
    InferenceHead head;
    const int vocab = shape.decoder.vocab_size;
    bool packed = false;
    if (shard_head && world.size() > 1 && vocab >= world.size()) {
        head.sharded = std::make_unique<ShardedHead>(world, decoder.head(), vocab, shape.d_model);
        packed = head.sharded->packed_bytes() > 0;
    } else {
        head.whole = PackedLinear(decoder.head(), vocab, shape.d_model);
        packed = head.whole.packed();
    }
    if (packed) std::vector<float>().swap(decoder.lm_head);
    return head;
}

}  // namespace

WholeModel::WholeModel(const mpi::Comm& world, Job& job, bool shard_head)
    : world_(world),
      job_(job),
      decoder_(job.source().load_decoder(world)),
      head_(pack_for_inference(world, decoder_, job.shape(), shard_head)),
      forward_(job.model(), decoder_, job.forward(), &head_.whole, head_.sharded.get()),
      aside_(job.model(), decoder_, job.forward(), &head_.whole, head_.sharded.get()),
      load_(static_cast<size_t>(job.shape().num_layers)) {}

namespace {

// One chunk of a fresh cache for each ids vector (caches: filled here, one a chunk).
std::vector<SequenceChunk> fresh_chunks(const std::vector<std::vector<int32_t>>& ids, int num_layers,
                                        std::vector<SequenceCache>& caches) {
    caches.assign(ids.size(), make_sequence_cache(num_layers));
    std::vector<SequenceChunk> chunks;
    for (size_t i = 0; i < ids.size(); ++i) chunks.push_back({ids[i], &caches[i]});
    return chunks;
}

}  // namespace

StepResult WholeModel::run(DecoderForward& forward, std::span<const SequenceChunk> chunks, LogitRows rows,
                           std::vector<float>& logits, int64_t& tokens) {
    tokens = 0;
    for (const SequenceChunk& c : chunks) tokens += static_cast<int64_t>(c.ids.size());
    const int64_t first = mpi::exscan_sum<int64_t>(world_, std::span<const int64_t>(&tokens, 1))[0];
    const int64_t all = mpi::allreduce_one<int64_t>(world_, tokens, mpi::Op::kSum);
    return forward.step(world_, chunks, rows, first, all, job_.biases(), logits);
}

StepResult WholeModel::step(int step, std::span<const SequenceChunk> chunks, LogitRows rows,
                            std::vector<float>& logits) {
    (void)step;
    int64_t tokens = 0;
    StepResult result = run(forward_, chunks, rows, logits, tokens);
    last_tokens_ = tokens;
    tokens_run_ += tokens;
    moe_times_.gate += result.times.gate;
    moe_times_.dispatch += result.times.dispatch;
    moe_times_.expert += result.times.expert;
    moe_times_.combine += result.times.combine;
    for (size_t l = 0; l < result.layers.size(); ++l) {
        const std::vector<int64_t>& e = result.layers[l].expert_load;
        if (load_[l].size() < e.size()) load_[l].resize(e.size());
        for (size_t i = 0; i < e.size(); ++i) load_[l][i] += e[i];
    }
    return result;
}

StepResult WholeModel::step(int step, const std::vector<std::vector<int32_t>>& ids, LogitRows rows,
                            std::vector<float>& logits) {
    std::vector<SequenceCache> caches;
    return this->step(step, fresh_chunks(ids, job_.shape().num_layers, caches), rows, logits);
}

void WholeModel::step_aside(const std::vector<std::vector<int32_t>>& ids, std::vector<float>& logits) {
    std::vector<SequenceCache> caches;
    int64_t tokens = 0;
    run(aside_, fresh_chunks(ids, job_.shape().num_layers, caches), LogitRows::kAll, logits, tokens);
}

std::vector<double> WholeModel::local_parts() const {
    const DecoderTimes& d = forward_.times();
    return {d.embed,           d.attention,        moe_times_.gate, moe_times_.dispatch,
            moe_times_.expert, moe_times_.combine, d.lm_head};
}

const std::vector<std::string>& WholeModel::part_names() {
    static const std::vector<std::string> names = {"embed",   "attention", "gate",   "dispatch",
                                                   "experts", "combine",   "lm_head"};
    return names;
}

Json WholeModel::times_json(const mpi::Comm& world, double seconds) {
    std::vector<double> parts = local_parts();
    mpi::allreduce<double>(world, parts, mpi::Op::kSum);
    const int64_t tokens = mpi::allreduce_one<int64_t>(world, tokens_run_, mpi::Op::kSum);
    const int num_experts = job_.shape().num_experts;
    Json load = Json::array();
    for (size_t l = 0; l < load_.size(); ++l) {
        std::vector<int64_t> e(static_cast<size_t>(num_experts), 0);
        const bool moe = !job_.model().layers[l].dense;
        for (size_t i = 0; i < load_[l].size() && i < e.size(); ++i) e[i] = load_[l][i];
        mpi::allreduce<int64_t>(world, e, mpi::Op::kSum);
        load.push_back(moe ? Json(e) : Json(nullptr));
    }
    const double mine[2] = {static_cast<double>(decoder_.bytes() + head_.packed_bytes() + job_.model().weight_bytes() -
                                                job_.model().expert_bytes()),
                            static_cast<double>(job_.model().expert_bytes())};
    const std::vector<double> bytes = mpi::gather_to_root<double>(world, std::span<const double>(mine, 2));
    Json replicated = Json::array(), experts = Json::array();
    for (size_t r = 0; r + 1 < bytes.size(); r += 2) {
        replicated.push_back(static_cast<uint64_t>(bytes[r]));
        experts.push_back(static_cast<uint64_t>(bytes[r + 1]));
    }
    const double p = world.size();
    Json breakdown = Json::object();
    for (size_t i = 0; i < parts.size(); ++i) breakdown[part_names()[i]] = parts[i] / p;
    return {{"tokens_run", tokens},
            {"seconds", seconds},
            {"tokens_per_s", seconds > 0 ? Json(static_cast<double>(tokens) / seconds) : Json(nullptr)},
            {"time_breakdown_s", breakdown},
            {"expert_load", load},
            {"weight_bytes_per_rank", {{"replicated", replicated}, {"experts", experts}}}};
}

Json whole_model_load_and_energy(const Json& summary) {
    const Json& e = summary.at("energy");
    return {{"energy",
             {{"source", e.at("source")}, {"joules", e.at("joules")}, {"joules_per_token", e.at("joules_per_token")}}},
            {"peak_rss_bytes", summary.at("memory").at("peak_rss_bytes")}};
}

void print_eval(const Json& eval, const std::string& dir) {
    auto num = [](const Json& j) { return j.is_number() ? j.get<double>() : NAN; };
    std::printf("epmoe eval: %s, %lld windows, %lld tokens scored\n", eval["input"].get<std::string>().c_str(),
                static_cast<long long>(eval["windows"].get<int64_t>()),
                static_cast<long long>(eval["tokens_scored"].get<int64_t>()));
    std::printf("  perplexity    %.6g (mean NLL %.6g nats)\n", num(eval["perplexity"]), num(eval["mean_nll"]));
    std::printf("  tokens/s      %.0f (%lld tokens run in %.3g s)\n", num(eval["tokens_per_s"]),
                static_cast<long long>(eval["tokens_run"].get<int64_t>()), num(eval["seconds"]));
    std::printf("  breakdown    ");
    double total = 0;
    for (const auto& [k, v] : eval["time_breakdown_s"].items()) total += num(v);
    for (const auto& [k, v] : eval["time_breakdown_s"].items())
        std::printf(" %s %.1f%%", k.c_str(), total > 0 ? 100 * num(v) / total : 0.0);
    std::printf("\n  energy        source %s, %s J/token\n", eval["energy"]["source"].get<std::string>().c_str(),
                eval["energy"]["joules_per_token"].is_number()
                    ? std::to_string(eval["energy"]["joules_per_token"].get<double>()).c_str()
                    : "null");
    std::printf("results: %s\n", dir.c_str());
    std::fflush(stdout);
}

}  // namespace epmoe
