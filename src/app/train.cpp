// `epmoe train`: per step, this rank's share of the global batch through DecoderTrainer (forward, losses,
// backward through the expert exchange), the replicated gradients summed over the ranks, the global norm
// clipped, AdamW with the warmup + cosine schedule; rank 0 logs each step to train_log.jsonl, validates every
// train.eval_every steps against a bigram model of the same data, and the model is saved as a Hugging Face
// checkpoint (train.save_dir). Pure expert parallelism: the experts sharded over every rank, each rank a
// data-parallel replica of the rest.
#include "app/train.hpp"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>

#include "app/job.hpp"
#include "app/train_data.hpp"
#include "app/version.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/io/results.hpp"
#include "epmoe/model/checkpoint_write.hpp"
#include "epmoe/model/decoder_forward.hpp"
#include "epmoe/train/optim.hpp"

namespace epmoe {
namespace {

// The load-balancing loss' weight: train.aux_loss_coef, or a checkpoint's router_aux_loss_coef, else 0.01.
double aux_coef(const Config& config) {
    if (config.train.aux_loss_coef >= 0) return config.train.aux_loss_coef;
    if (config.model.path.empty()) return 0.01;
    std::ifstream in(config.model.path + "/config.json");
    const Json j = in ? Json::parse(in, nullptr, false) : Json();
    return j.is_object() && j.contains("router_aux_loss_coef") && j["router_aux_loss_coef"].is_number()
               ? j["router_aux_loss_coef"].get<double>()
               : 0.01;
}

Family family_of(const std::string& name) {
    for (Family f : {Family::kMixtral, Family::kOlmoe, Family::kQwen2Moe, Family::kQwen3Moe})
        if (std::string(family_name(f)) == name) return f;
    fail("train.family ", name, ": not a family");
}

// The mean NLL of the validation windows (every rank's share) under the current weights. Collective.
double validation_loss(const mpi::Comm& world, const Model& model, DecoderForward& forward,
                       const std::vector<TrainSequence>& windows) {
    std::vector<std::vector<int32_t>> ids;
    std::vector<SequenceCache> caches(windows.size(), make_sequence_cache(model.shape.num_layers));
    std::vector<SequenceChunk> chunks;
    for (size_t i = 0; i < windows.size(); ++i) chunks.push_back({windows[i].ids, &caches[i]});
    std::vector<float> logits;
    const int64_t n = [&] { int64_t t = 0; for (const auto& w : windows) t += static_cast<int64_t>(w.ids.size()); return t; }();
    const int64_t first = mpi::exscan_sum<int64_t>(world, std::span<const int64_t>(&n, 1))[0];
    forward.step(world, chunks, LogitRows::kAll, first, mpi::allreduce_one<int64_t>(world, n, mpi::Op::kSum), {}, logits);
    const int vocab = model.shape.decoder.vocab_size;
    double sums[2] = {0, 0};
    size_t row = 0;
    for (const TrainSequence& w : windows)
        for (size_t t = 0; t < w.ids.size(); ++t, ++row)
            sums[0] += token_nll(std::span<const float>(logits).subspan(row * vocab, vocab), w.targets[t]), sums[1] += 1;
    mpi::allreduce<double>(world, sums, mpi::Op::kSum);
    return sums[0] / sums[1];
}

// Rank 0's files: train_log.jsonl as it goes, config.json and summary.json at the end (renamed into place).
class TrainLog {
public:
    TrainLog(const mpi::Comm& world, const Config& config) : rank0_(world.rank() == 0), config_(config) {
        mpi::all_or_none(world, [&] {
            if (!rank0_) return;
            dir_ = config.output.dir.empty() ? default_results_dir("train") : config.output.dir;
            writer_ = std::make_unique<ResultsWriter>(dir_, config.output.overwrite);
            log_.open(writer_->stage("train_log.jsonl"));
            if (!log_) fail("results directory ", dir_, ": cannot write train_log.jsonl");
        });
    }
    void line(const Json& j) {
        if (rank0_) log_ << j.dump() << "\n" << std::flush;
    }
    void finish(Json summary) {
        if (!rank0_) return;
        log_.close();
        summary["run"] = {{"epmoe_version", version()}, {"command_line", config_.command_line}, {"finished_utc", utc_now()}};
        writer_->finish(*config_.json, summary);
        std::printf("results: %s\n", dir_.c_str());
    }

private:
    bool rank0_;
    const Config& config_;
    std::string dir_;
    std::unique_ptr<ResultsWriter> writer_;
    std::ofstream log_;
};

}  // namespace

namespace {

// The state of one training run.
class Trainer {
public:
    Trainer(const mpi::Comm& world, const Config& config)
        : world_(world),
          config_(config),
          source_(world, config, true),
          shape_(source_.shape()),
          placement_(run_placement(world, config, shape_.num_experts)) {
        mpi::all_or_none(world, [&] {
            if (config.compute.dtype != "fp32")
                fail("epmoe train runs FP32: compute.dtype = \"", config.compute.dtype, "\" is for inference");
            data_ = load_train_data(config, shape_.decoder.vocab_size);
        });
        const int64_t rows = (config.train.batch + world.size() - 1) / world.size() * config.text.ctx;
        model_ = source_.load(world, [&](int e) { return placement_.owns(world.rank(), e); }, rows);
        decoder_ = source_.load_decoder(world);
        grads_ = make_grads(model_, decoder_);
        register_params(registry_, model_, decoder_, grads_, world, config.train.decay_router);
        adamw_ = std::make_unique<AdamW>(registry_, AdamWConfig(0.9, 0.95, 1e-8, config.train.weight_decay));
        schedule_ = std::make_unique<LrSchedule>(config.train.lr, config.train.min_lr, config.train.warmup_steps,
                                                 config.train.steps);
        trainer_ = std::make_unique<DecoderTrainer>(model_, decoder_, placement_,
                                                    DispatchOptions{config.routing.capacity_factor, 1}, aux_coef(config));
        moe_ = std::make_unique<Forward>(model_, placement_, config.routing.capacity_factor);
        forward_ = std::make_unique<DecoderForward>(model_, decoder_, *moe_);
        val_ = validation_windows(data_.val, config.text.ctx, config.train.val_windows, world.rank(), world.size());
        std::vector<double> bigram = {bigram_nll(data_.train, val_, shape_.decoder.vocab_size) * static_cast<double>(val_.size() * config.text.ctx),
                                      static_cast<double>(val_.size() * config.text.ctx)};
        mpi::allreduce<double>(world, bigram, mpi::Op::kSum);
        bigram_ = bigram[0] / bigram[1];
    }

    // One step; returns its log line. Collective.
    Json step(int s) {
        const TrainConfig& t = config_.train;
        const std::vector<TrainSequence> batch =
            sample_batch(data_.train, config_.text.ctx, t.batch, config_.seed, s, world_.rank(), world_.size());
        registry_.zero_grad();
        const double t0 = mpi::wtime();
        const TrainLosses losses = trainer_->step(world_, batch, grads_);
        const double t1 = mpi::wtime();
        allreduce_gradients(registry_);
        const double t2 = mpi::wtime();
        const double norm = t.grad_clip > 0 ? clip_grad_norm(registry_, world_, t.grad_clip)
                                            : global_grad_norm(registry_, world_);
        if (!std::isfinite(losses.lm) || !std::isfinite(norm))
            mpi::all_or_none(world_, [&] {
                fail("epmoe train: step ", s, ": the loss (", losses.lm, ") or the gradient norm (", norm,
                     ") is not finite; the last checkpoint written stays as it was");
            });
        const double lr = schedule_->at(s);
        adamw_->step(registry_, lr);
        const double t3 = mpi::wtime();
        tokens_ += losses.tokens;
        seconds_ += t3 - t0;
        last_loss_ = losses.lm;
        return {{"step", s}, {"lm_loss", losses.lm}, {"aux_loss", losses.aux}, {"lr", lr}, {"grad_norm", norm},
                {"tokens", losses.tokens}, {"tokens_per_s", losses.tokens / (t3 - t0)},
                {"time_s", {{"forward_backward", t1 - t0}, {"allreduce", t2 - t1}, {"optimizer", t3 - t2}}},
                {"drop_rate", losses.drop_rate}};
    }

    double validate() { return last_val_ = validation_loss(world_, model_, *forward_, val_); }

    void save() {
        CheckpointWriteOptions options;
        options.router_aux_loss_coef = aux_coef(config_);
        write_checkpoint(world_, config_.train.save_dir, config_.model.path.empty() ? family_of(config_.train.family)
                                                                                   : source_.family(),
                         model_, decoder_, options);
    }

    Json summary() const {
        return {{"ranks", world_.size()}, {"steps", config_.train.steps}, {"data", data_.source},
                {"tokens_total", tokens_}, {"seconds", seconds_},
                {"tokens_per_s", seconds_ > 0 ? Json(tokens_ / seconds_) : Json(nullptr)},
                {"final_lm_loss", last_loss_}, {"final_val_loss", last_val_}, {"bigram_val_loss", bigram_},
                {"checkpoint", config_.train.save_dir.empty() ? Json(nullptr) : Json(config_.train.save_dir)}};
    }
    double bigram() const { return bigram_; }

private:
    const mpi::Comm& world_;
    const Config& config_;
    ModelSource source_;
    const ModelShape shape_;
    const Placement placement_;
    TrainData data_;
    Model model_;
    DecoderWeights decoder_;
    ModelGrads grads_;
    ParamRegistry registry_;
    std::unique_ptr<AdamW> adamw_;
    std::unique_ptr<LrSchedule> schedule_;
    std::unique_ptr<DecoderTrainer> trainer_;
    std::unique_ptr<Forward> moe_;
    std::unique_ptr<DecoderForward> forward_;
    std::vector<TrainSequence> val_;
    double bigram_ = 0, seconds_ = 0, last_loss_ = NAN, last_val_ = NAN;
    int64_t tokens_ = 0;
};

bool due(int step, int steps, int every) { return step + 1 == steps || (every > 0 && (step + 1) % every == 0); }

}  // namespace

int train(const mpi::Comm& world, const Config& config) {
    set_up_rank(world, config);
    Trainer trainer(world, config);
    TrainLog log(world, config);
    const bool talk = world.rank() == 0 && !config.output.quiet;
    if (talk) std::fprintf(stderr, "epmoe train: %d steps; bigram model's validation loss %.4f\n", config.train.steps, trainer.bigram());
    double last_print = mpi::wtime();
    for (int s = 0; s < config.train.steps; ++s) {
        Json line = trainer.step(s);
        if (due(s, config.train.steps, config.train.eval_every)) {
            line["val_loss"] = trainer.validate();
            line["bigram_val_loss"] = trainer.bigram();
        }
        log.line(line);
        if (talk && (line.contains("val_loss") || mpi::wtime() - last_print > config.output.progress_interval_s)) {
            last_print = mpi::wtime();
            std::fprintf(stderr, "epmoe train: step %d/%d, loss %.4f%s, %.0f tokens/s\n", s + 1, config.train.steps,
                         line["lm_loss"].get<double>(),
                         line.contains("val_loss") ? cat(", val ", line["val_loss"].get<double>()).c_str() : "",
                         line["tokens_per_s"].get<double>());
        }
        if (!config.train.save_dir.empty() && due(s, config.train.steps, config.train.save_every)) trainer.save();
    }
    Json summary = trainer.summary();
    if (talk)
        std::printf("epmoe train: final loss %.4f, validation %.4f (bigram %.4f), %.0f tokens/s\n",
                    summary["final_lm_loss"].get<double>(), summary["final_val_loss"].get<double>(),
                    trainer.bigram(), summary["tokens_per_s"].is_number() ? summary["tokens_per_s"].get<double>() : 0.0);
    log.finish(summary);
    return 0;
}

}  // namespace epmoe
