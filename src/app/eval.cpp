// `epmoe eval`: each rank takes its share of the (sequence, window) items, runs up to text.batch of them a
// step through the whole model (app/job.hpp's bookkeeping after each step) and sums the NLL of the targets
// each window scores; rank 0 writes eval.json (and the logits dump) with the run's results.
#include "app/eval.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>

#include "app/job.hpp"
#include "app/text_input.hpp"
#include "app/whole_model.hpp"
#include "epmoe/io/safetensors.hpp"

namespace epmoe {
namespace {

// This rank's sums over the windows it scored: NLL and targets per sequence, logits to dump.
struct EvalSums {
    std::vector<double> nll, targets;  // [num_sequences]
    std::vector<float> dump;           // [rows, vocab] the logits of its sequences, in order (--dump-logits)
};

// Scores the items' windows from the step's logits (every row of every chunk, in order).
void score(std::span<const EvalItem> items, std::span<const std::vector<int32_t>> ids, std::span<const float> logits,
           int vocab, bool keep_logits, EvalSums& sums) {
    size_t row = 0;
    for (size_t i = 0; i < items.size(); ++i) {
        const EvalWindow& w = items[i].window;
        const size_t n = ids[i].size();
        for (int64_t t = w.end - w.num_scored; t < w.end; ++t) {  // target t, predicted from t - 1
            const size_t r = row + static_cast<size_t>(t - 1 - w.begin);
            sums.nll[static_cast<size_t>(items[i].sequence)] +=
                token_nll(logits.subspan(r * vocab, vocab), ids[i][static_cast<size_t>(t - w.begin)]);
        }
        sums.targets[static_cast<size_t>(items[i].sequence)] += static_cast<double>(w.num_scored);
        if (keep_logits)
            sums.dump.insert(sums.dump.end(), logits.begin() + static_cast<std::ptrdiff_t>(row * vocab),
                             logits.begin() + static_cast<std::ptrdiff_t>((row + n) * vocab));
        row += n;
    }
}

// EvalSums of nothing yet, for the input's sequences.
EvalSums empty_sums(const TextInput& input) {
    const size_t n = static_cast<size_t>(input.num_sequences());
    return {std::vector<double>(n), std::vector<double>(n), {}};
}

// This rank's share of `count` items, `batch` a step, over as many steps as the busiest rank needs (every rank
// takes part in every step's exchanges). Collective.
struct RankRounds {
    RankRounds(const mpi::Comm& world, int64_t count, int64_t per_step)
        : mine(split_over_ranks(count, world.rank(), world.size())),
          batch(per_step),
          rounds(mpi::allreduce_one<int64_t>(world, (mine.size() + per_step - 1) / per_step, mpi::Op::kMax)) {}
    // The index of round r's first item, and its items from `all`.
    int64_t first(int64_t r) const { return std::min(mine.end, mine.begin + r * batch); }
    std::span<const EvalItem> items(const std::vector<EvalItem>& all, int64_t r) const {
        return {all.data() + first(r), static_cast<size_t>(std::min(mine.end, first(r) + batch) - first(r))};
    }

    IndexRange mine;
    int64_t batch, rounds;
};

// The tokens of each item's window.
std::vector<std::vector<int32_t>> read_items(TextInput& input, std::span<const EvalItem> items) {
    std::vector<std::vector<int32_t>> ids;
    for (const EvalItem& item : items)
        ids.push_back(
            input.read(item.sequence * input.seq_len() + item.window.begin, item.window.end - item.window.begin));
    return ids;
}

// eval.json's per-sequence and total figures from every rank's sums (complete on rank 0). Collective.
Json nll_figures(const mpi::Comm& world, EvalSums& sums) {
    mpi::allreduce<double>(world, sums.nll, mpi::Op::kSum);
    mpi::allreduce<double>(world, sums.targets, mpi::Op::kSum);
    double nll = 0, targets = 0;
    Json per = Json::array();
    for (size_t b = 0; b < sums.nll.size(); ++b) {
        nll += sums.nll[b];
        targets += sums.targets[b];
        const double mean = sums.targets[b] > 0 ? sums.nll[b] / sums.targets[b] : NAN;
        per.push_back({{"tokens_scored", static_cast<int64_t>(sums.targets[b])},
                       {"mean_nll", sums.targets[b] > 0 ? Json(mean) : Json(nullptr)},
                       {"perplexity", sums.targets[b] > 0 ? Json(std::exp(mean)) : Json(nullptr)}});
    }
    const double mean = nll / targets;
    return {{"tokens_scored", static_cast<int64_t>(targets)},
            {"mean_nll", mean},
            {"perplexity", std::exp(mean)},
            {"sequences", per}};
}

// --dump-logits: rank 0 writes logits [B, S, V] gathered from the ranks (sequences in rank order = input order).
void dump_logits(const mpi::Comm& world, const std::string& path, const TextInput& input, int vocab,
                 const std::vector<float>& mine) {
    std::vector<float> all = mpi::gatherv_to_root<float>(world, mine);
    mpi::all_or_none(world, [&] {
        if (world.rank() != 0) return;
        write_safetensors(path, {tensor_from_f32("logits", {input.num_sequences(), input.seq_len(), vocab}, all)},
                          {{"producer", "epmoe eval"}});
    });
}

// Opens the token input and cuts it into items, checking --dump-logits against it; returns the most tokens a
// rank runs in a step (for the memory check). Collective.
int64_t open_eval_input(const mpi::Comm& world, const Config& config, const ModelShape& shape,
                        std::unique_ptr<TextInput>& input, std::vector<EvalItem>& items) {
    const TextConfig& text = config.text;
    mpi::all_or_none(world, [&] {
        input = std::make_unique<TextInput>(config, shape.decoder.vocab_size);
        items = eval_items(*input, text);
        if (!text.dump_logits.empty() && (input->is_stream() || input->seq_len() > text.ctx))
            fail("--dump-logits needs a [B, S] token input with S <= --ctx (one window a sequence); ",
                 input->describe(), " is ", input->is_stream() ? "a stream" : "longer than --ctx");
    });
    return text.batch * std::min<int64_t>(text.ctx, input->seq_len());
}

// --policy ttt's perplexity budget: policy.ttt.holdout_windows windows spread evenly over the input (at most half
// of them) are kept out of the updates; at the checks their perplexity under the adapted router is compared with
// the checkpoint router's, and over policy.ttt.max_delta_ppl the correction shrinks (rank 0 says so). The held-out
// windows are still scored in the eval like every other window. An input of one window holds none out: the run
// says that the budget is not checked.
class HeldOut {
public:
    HeldOut(const mpi::Comm& world, const Config& config, TestTimeRouter& ttt, TextInput& input,
            const std::vector<EvalItem>& items, int vocab)
        : world_(world), config_(config), ttt_(ttt), input_(input), vocab_(vocab) {
        const int64_t n = static_cast<int64_t>(items.size());
        const int64_t h = std::min<int64_t>(config.policy.ttt.holdout_windows, n / 2);
        for (int64_t k = 0; k < h; ++k) {
            held_index_.push_back((2 * k + 1) * n / (2 * h));
            held_.push_back(items[static_cast<size_t>(held_index_.back())]);
        }
        if (held_.empty() && world.rank() == 0)
            std::fprintf(stderr,
                         "epmoe: note: policy ttt: %lld window(s), too few to hold one out: the perplexity budget "
                         "(policy.ttt.max_delta_ppl) is not checked in this run\n",
                         static_cast<long long>(n));
    }

    // The checkpoint router's perplexity on the held-out windows (the reference of every check). Collective.
    void measure_checkpoint(WholeModel& model) {
        if (!held_.empty()) ppl0_ = perplexity(model, false);
    }

    // The rows of this rank's step (items first.. in order, their ids) the update may learn from.
    void set_learn_mask(int64_t first, const std::vector<std::vector<int32_t>>& ids) {
        std::vector<uint8_t>& learn = ttt_.adaptation().learn;
        learn.clear();
        for (size_t i = 0; i < ids.size(); ++i) {
            const bool held =
                std::binary_search(held_index_.begin(), held_index_.end(), first + static_cast<int64_t>(i));
            learn.insert(learn.end(), ids[i].size(), held ? 0 : 1);
        }
    }

    // After step `step` of `steps`: the check when due (after each of the first check_every steps, where a fresh
    // correction moves fastest, then every check_every steps). Collective.
    void after_step(WholeModel& model, int step, int steps) {
        const int n = step + 1, every = config_.policy.ttt.check_every;
        if (held_.empty() || n == steps || (n > every && n % every != 0)) return;
        const double t0 = mpi::wtime();
        const double ppl = perplexity(model, true);
        const double factor = ttt_.check(step, ppl, ppl0_, mpi::wtime() - t0);
        if (factor < 1 && world_.rank() == 0)
            std::fprintf(
                stderr,
                "epmoe: ttt: after step %d the held-out perplexity %.6g is %.3g%% over the checkpoint "
                "router's %.6g (policy.ttt.max_delta_ppl %.3g%%): the correction shrinks to %.2g of itself, the "
                "fidelity weight doubles\n",
                step + 1, ppl, 100 * (ppl / ppl0_ - 1), ppl0_, 100 * config_.policy.ttt.max_delta_ppl, factor);
    }

    Json summary() const {
        return {{"holdout_windows", held_.size()},
                {"holdout_ppl_checkpoint", held_.empty() ? Json(nullptr) : Json(ppl0_)}};
    }

private:
    // Perplexity of the held-out windows, with the correction (adapted) or the checkpoint's router. Collective.
    double perplexity(WholeModel& model, bool adapted) {
        RouterAdaptation& adapt = ttt_.adaptation();
        adapt.apply = adapted, adapt.capture = false, adapt.learn.clear();
        const RankRounds rounds(world_, static_cast<int64_t>(held_.size()), config_.text.batch);
        EvalSums sums = empty_sums(input_);
        std::vector<float> logits;
        for (int64_t r = 0; r < rounds.rounds; ++r) {
            const std::span<const EvalItem> part = rounds.items(held_, r);
            std::vector<std::vector<int32_t>> ids;
            mpi::all_or_none(world_, [&] { ids = read_items(input_, part); });
            model.step_aside(ids, logits);
            score(part, ids, logits, vocab_, false, sums);
        }
        const Json figures = nll_figures(world_, sums);
        adapt.apply = true, adapt.capture = true;
        return figures["perplexity"].get<double>();
    }

    const mpi::Comm& world_;
    const Config& config_;
    TestTimeRouter& ttt_;
    TextInput& input_;
    int vocab_;
    std::vector<EvalItem> held_;
    std::vector<int64_t> held_index_;  // their indices in the eval's items, ascending
    double ppl0_ = NAN;
};

}  // namespace

Json eval_job(const mpi::Comm& world, const Config& config, bool print_summary) {
    const TextConfig& text = config.text;
    std::unique_ptr<TextInput> input;
    std::vector<EvalItem> items;
    Job job(
        world, config, [&](const ModelShape& shape) { return open_eval_input(world, config, shape, input, items); },
        true);
    WholeModel model(world, job);
    const int vocab = job.shape().decoder.vocab_size;
    const RankRounds plan(world, static_cast<int64_t>(items.size()), text.batch);
    const int64_t rounds = plan.rounds;
    EvalSums sums = empty_sums(*input);
    std::vector<float> logits;
    std::unique_ptr<HeldOut> held;
    if (job.ttt()) {
        held = std::make_unique<HeldOut>(world, config, *job.ttt(), *input, items, vocab);
        held->measure_checkpoint(model);
    }
    for (int64_t r = 0; r < rounds; ++r) {
        const std::span<const EvalItem> batch = plan.items(items, r);
        std::vector<std::vector<int32_t>> ids;
        mpi::all_or_none(world, [&] { ids = read_items(*input, batch); });
        if (held) held->set_learn_mask(plan.first(r), ids);
        const double t0 = mpi::wtime();
        const StepResult result = model.step(static_cast<int>(r), ids, LogitRows::kAll, logits);
        score(batch, ids, logits, vocab, !text.dump_logits.empty(), sums);
        job.end_step(static_cast<int>(r), static_cast<int>(rounds), t0, result, model.last_tokens(),
                     model.last_flops());
        if (held) held->after_step(model, static_cast<int>(r), static_cast<int>(rounds));
    }
    Json figures = nll_figures(world, sums);
    if (!text.dump_logits.empty()) dump_logits(world, text.dump_logits, *input, vocab, sums.dump);
    Json times = model.times_json(world, job.seconds_so_far());
    Json out;
    job.finish(false, [&](Json& summary, ResultsWriter& writer) {
        out = {{"input", input->describe()},
               {"num_sequences", input->num_sequences()},
               {"seq_len", input->seq_len()},
               {"ctx", text.ctx},
               {"stride", text.stride == 0 ? text.ctx : text.stride},
               {"windows", items.size()}};
        out.update(figures);
        out.update(times);
        out.update(whole_model_load_and_energy(summary));
        if (held) summary["ttt"].update(held->summary()), out["ttt"] = summary["ttt"];
        writer.stage_json("eval.json", out);
        summary["memory"]["weight_bytes_split_per_rank"] = out["weight_bytes_per_rank"];
        summary["eval"] = {{"tokens_scored", out["tokens_scored"]}, {"perplexity", out["perplexity"]}};
        if (print_summary) print_eval(out, writer.dir());
    });
    return out;
}

int eval(const mpi::Comm& world, const Config& config) {
    eval_job(world, config, true);
    return 0;
}

}  // namespace epmoe
