// `epmoe generate`: each rank takes its share of the prompts and runs them in groups of text.batch: one prefill
// step (the whole prompts, the last row's logits), then max_new_tokens - 1 decode steps of one token a
// sequence, each appended to its KV cache. Every rank makes the same number of steps (the MoE exchange is
// collective): a rank out of prompts takes part with none. Rank 0 writes generated.safetensors and .jsonl.
#include "app/generate.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>

#include "app/job.hpp"
#include "app/text_input.hpp"
#include "app/whole_model.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/io/safetensors.hpp"

namespace epmoe {
namespace {

// The sequences of one group: prompts, caches, what they generated and their samplers.
struct Group {
    std::vector<std::vector<int32_t>> ids;  // [prompts] the prompt, then the tokens fed back one by one
    std::vector<SequenceCache> caches;
    std::vector<std::vector<int32_t>> generated;
    std::vector<std::mt19937_64> rng;  // seeded by (seed, prompt index): the draws do not depend on the ranks
    std::vector<uint8_t> finished;     // generated an end-of-sequence id: pads from then on
};

// What ends a sequence, as transformers' generate() does it: once a sequence has generated one of `eos`, every
// later token is `pad` (pad_token_id, or the first eos id when there is none).
struct StopIds {
    std::vector<int32_t> eos;
    int32_t pad = -1;
};

int32_t next_token(std::span<const float> logits, const GenerateConfig& g, std::mt19937_64& rng) {
    return g.temperature > 0 ? sample_top_p(logits, g.temperature, g.top_p, rng) : argmax(logits);
}

// Per-step wall times and breakdown deltas of the decode steps.
struct DecodeTimes {
    std::vector<double> step_s;
    std::vector<double> parts;  // WholeModel::part_names(), this rank's decode steps only
    double prefill_s = 0;
    int64_t prefill_tokens = 0;  // this rank's
};

// Percentile q (0..1) of xs by nearest rank; null when empty.
Json percentile(std::vector<double> xs, double q) {
    if (xs.empty()) return nullptr;
    std::sort(xs.begin(), xs.end());
    const size_t i = std::min(xs.size() - 1, static_cast<size_t>(std::ceil(q * static_cast<double>(xs.size())) - 1));
    return xs[i];
}

class Generator {
public:
    Generator(const mpi::Comm& world, const Config& config, Job& job, WholeModel& model, const TextInput& input)
        : world_(world), config_(config), job_(job), model_(model), input_(input) {
        stop_.eos = job.source().eos_token_ids();
        stop_.pad = job.source().pad_token_id() >= 0 ? job.source().pad_token_id()
                    : stop_.eos.empty()              ? -1
                                                     : stop_.eos[0];
        mine_ = split_over_ranks(input.num_sequences(), world.rank(), world.size());
        const int64_t batch = config.text.batch;
        groups_ = mpi::allreduce_one<int64_t>(world, (mine_.size() + batch - 1) / batch, mpi::Op::kMax);
        steps_ = static_cast<int>(groups_ * config.generate.max_new_tokens);
        times_.parts.assign(WholeModel::part_names().size(), 0.0);
    }

    // Runs every group; returns this rank's generated ids [mine * max_new_tokens], prompt order.
    std::vector<int32_t> run() {
        std::vector<int32_t> out;
        for (int64_t g = 0; g < groups_; ++g) {
            Group group = make_group(g);
            decode_group(g, group);
            for (const auto& gen : group.generated) out.insert(out.end(), gen.begin(), gen.end());
        }
        return out;
    }

    const DecodeTimes& times() const { return times_; }
    int64_t first_prompt() const { return mine_.begin; }
    const StopIds& stop() const { return stop_; }

private:
    Group make_group(int64_t g) {
        Group group;
        const int64_t first = std::min(mine_.end, mine_.begin + g * config_.text.batch);
        const int64_t last = std::min(mine_.end, first + config_.text.batch);
        mpi::all_or_none(world_, [&] {
            for (int64_t b = first; b < last; ++b) group.ids.push_back(input_.sequence(b));
        });
        for (int64_t b = first; b < last; ++b) {
            group.caches.push_back(make_sequence_cache(job_.shape().num_layers));
            group.generated.emplace_back();
            group.rng.emplace_back(config_.seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(b));
            group.finished.push_back(0);
        }
        return group;
    }

    void decode_group(int64_t g, Group& group) {
        const int vocab = job_.shape().decoder.vocab_size;
        const int new_tokens = config_.generate.max_new_tokens;
        std::vector<float> logits;
        for (int t = 0; t < new_tokens; ++t) {
            std::vector<SequenceChunk> chunks;
            for (size_t i = 0; i < group.ids.size(); ++i) {
                std::span<const int32_t> ids = group.ids[i];
                if (t > 0) ids = ids.subspan(ids.size() - 1);  // the token generated last
                chunks.push_back({ids, &group.caches[i]});
            }
            const int step = static_cast<int>(g * new_tokens + t);
            const std::vector<double> before = model_.local_parts();
            const double t0 = mpi::wtime();
            const StepResult result = model_.step(step, chunks, LogitRows::kLast, logits);
            account(t, t0, before);
            for (size_t i = 0; i < group.ids.size(); ++i) {
                int32_t next = next_token(std::span<const float>(logits).subspan(i * vocab, vocab), config_.generate,
                                          group.rng[i]);
                if (group.finished[i]) next = stop_.pad;
                if (std::find(stop_.eos.begin(), stop_.eos.end(), next) != stop_.eos.end()) group.finished[i] = 1;
                group.generated[i].push_back(next);
                group.ids[i].push_back(next);
            }
            job_.end_step(step, steps_, t0, result, model_.last_tokens(), model_.last_flops());
        }
    }

    void account(int t, double t0, const std::vector<double>& before) {
        const double seconds = mpi::wtime() - t0;
        if (t == 0) {
            times_.prefill_s += seconds;
            times_.prefill_tokens += model_.last_tokens();
            return;
        }
        times_.step_s.push_back(seconds);
        const std::vector<double> after = model_.local_parts();
        for (size_t i = 0; i < after.size(); ++i) times_.parts[i] += after[i] - before[i];
    }

    const mpi::Comm& world_;
    const Config& config_;
    Job& job_;
    WholeModel& model_;
    const TextInput& input_;
    IndexRange mine_;
    int64_t groups_ = 0;
    int steps_ = 0;
    DecodeTimes times_;
    StopIds stop_;
};

// The figures of the run (complete on rank 0). Collective.
Json generate_figures(const mpi::Comm& world, const Config& config, const TextInput& input, const DecodeTimes& t,
                      const std::vector<int32_t>& eos, int32_t pad) {
    std::vector<double> parts = t.parts;
    mpi::allreduce<double>(world, parts, mpi::Op::kSum);
    const double prefill_s = mpi::allreduce_one<double>(world, t.prefill_s, mpi::Op::kMax);
    const int64_t prefill_tokens = mpi::allreduce_one<int64_t>(world, t.prefill_tokens, mpi::Op::kSum);
    Json breakdown = Json::object();
    for (size_t i = 0; i < parts.size(); ++i) breakdown[WholeModel::part_names()[i]] = parts[i] / world.size();
    std::vector<double> ms;
    for (double s : t.step_s) ms.push_back(1e3 * s);
    return {{"input", input.describe()},
            {"num_prompts", input.num_sequences()},
            {"prompt_len", input.seq_len()},
            {"max_new_tokens", config.generate.max_new_tokens},
            {"sampling", config.generate.temperature > 0 ? "top_p" : "greedy"},
            {"temperature", config.generate.temperature},
            {"top_p", config.generate.top_p},
            {"eos_token_ids", eos},
            {"pad_token_id", pad >= 0 ? Json(pad) : Json(nullptr)},
            {"batch_per_rank", config.text.batch},
            {"prefill_tokens_per_s", prefill_s > 0 ? Json(prefill_tokens / prefill_s) : Json(nullptr)},
            {"decode_steps", t.step_s.size()},
            {"decode_ms_per_token_p50", percentile(ms, 0.5)},
            {"decode_ms_per_token_p99", percentile(ms, 0.99)},
            {"decode_time_breakdown_s", breakdown}};
}

// generated.safetensors and generated.jsonl (rank 0).
void write_generated(ResultsWriter& writer, const TextInput& input, int new_tokens, const std::vector<int32_t>& ids) {
    write_safetensors(writer.stage("generated.safetensors"),
                      {tensor_from_i32("generated_ids", {input.num_sequences(), new_tokens}, ids)},
                      {{"producer", "epmoe generate"}});
    std::ofstream out(writer.stage("generated.jsonl"));
    for (int64_t b = 0; b < input.num_sequences(); ++b) {
        const auto first = ids.begin() + static_cast<std::ptrdiff_t>(b * new_tokens);
        const std::vector<int32_t> generated(first, first + new_tokens);
        const Tokenizer* tok = input.tokenizer();  // --text: the prompt's own length, and the text generated
        const int64_t prompt_len = tok ? static_cast<int64_t>(input.sequence(b).size()) : input.seq_len();
        Json line = {{"prompt", b}, {"prompt_len", prompt_len}, {"generated_ids", generated}};
        if (tok) line["text"] = tok->decode(generated, true);
        out << line.dump() << "\n";
    }
    if (!out) fail(writer.dir(), ": cannot write generated.jsonl");
}

void print_generate(const Json& g, const std::string& dir) {
    auto num = [](const Json& j) { return j.is_number() ? j.get<double>() : NAN; };
    std::printf("epmoe generate: %s, %lld prompts of %lld tokens, %d new tokens each (%s)\n",
                g["input"].get<std::string>().c_str(), static_cast<long long>(g["num_prompts"].get<int64_t>()),
                static_cast<long long>(g["prompt_len"].get<int64_t>()), g["max_new_tokens"].get<int>(),
                g["sampling"].get<std::string>().c_str());
    std::printf("  prefill       %.0f tokens/s\n", num(g["prefill_tokens_per_s"]));
    std::printf("  decode        p50 %.3g ms/token, p99 %.3g ms/token\n", num(g["decode_ms_per_token_p50"]),
                num(g["decode_ms_per_token_p99"]));
    std::printf("results: %s\n", dir.c_str());
    std::fflush(stdout);
}

}  // namespace

Json generate_job(const mpi::Comm& world, const Config& config, bool print_summary) {
    std::unique_ptr<TextInput> input;
    Job job(
        world, config,
        [&](const ModelShape& shape) {
            mpi::all_or_none(world,
                             [&] { input = std::make_unique<TextInput>(config, shape.decoder.vocab_size, true); });
            return config.text.batch * input->seq_len();
        },
        true);
    job.note_unchecked_budget("generate");
    WholeModel model(world, job, /*shard_head=*/true);
    Generator generator(world, config, job, model, *input);
    const std::vector<int32_t> mine = generator.run();
    const std::vector<int32_t> all = mpi::gatherv_to_root<int32_t>(world, mine);
    Json out = generate_figures(world, config, *input, generator.times(), generator.stop().eos, generator.stop().pad);
    const Json model_figures = model.times_json(world, job.seconds_so_far());
    job.finish(false, [&](Json& summary, ResultsWriter& writer) {
        out["weight_bytes_per_rank"] = model_figures["weight_bytes_per_rank"];
        out["expert_load"] = model_figures["expert_load"];
        out.update(whole_model_load_and_energy(summary));
        write_generated(writer, *input, config.generate.max_new_tokens, all);
        summary["memory"]["weight_bytes_split_per_rank"] = out["weight_bytes_per_rank"];
        summary["generate"] = out;
        if (print_summary) print_generate(out, writer.dir());
    });
    return world.rank() == 0 ? out : Json(nullptr);
}

int generate(const mpi::Comm& world, const Config& config) {
    generate_job(world, config, true);
    return 0;
}

}  // namespace epmoe
