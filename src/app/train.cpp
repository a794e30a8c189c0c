// `epmoe train`: per step, this rank's share of the global batch through DecoderTrainer (forward, losses,
// backward through the expert exchange), the replicated gradients summed over the ranks, the global norm
// clipped, AdamW with the warmup + cosine schedule; rank 0 logs each step to train_log.jsonl, validates every
// train.eval_every steps against a bigram model of the same data, and the model is saved as a Hugging Face
// checkpoint (train.save_dir). DP x EP (train.ep_size, train/groups.hpp): the experts sharded over each group
// of ep_size consecutive ranks, tokens exchanged inside the group, the groups data-parallel replicas; the global
// batch split over every rank, the losses and the replicated weights' gradients reduced over the world.
#include "app/train.hpp"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <span>
#include <utility>

#include "app/job.hpp"
#include "app/train_data.hpp"
#include "app/train_hooks.hpp"
#include "app/train_parts.hpp"
#include "app/train_state.hpp"
#include "app/version.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/control/policy.hpp"
#include "epmoe/io/results.hpp"
#include "epmoe/model/checkpoint_write.hpp"
#include "epmoe/model/decoder_forward.hpp"
#include "epmoe/ops/gemm_time.hpp"
#include "epmoe/train/groups.hpp"
#include "epmoe/train/optim.hpp"

namespace epmoe {
namespace {

// The state of one training run.
class Trainer {
public:
    Trainer(const mpi::Comm& world, const Config& config)
        : world_(world),
          config_(config),
          source_(world, config, true),
          shape_(source_.shape()),
          groups_(world, config.train.ep_size),
          placement_(run_placement(world, config, shape_.num_experts, groups_.ep_size())),
          energy_(world, config.energy),
          flops_per_token_(train_flops_per_token(shape_)),
          aux_coef_(aux_coef(config, source_.family())) {
        mpi::all_or_none(world, [&] {
            if (config.compute.dtype != "fp32")
                fail("epmoe train runs FP32: compute.dtype = \"", config.compute.dtype, "\" is for inference");
            if (!config.train.save_dir.empty()) check_save_dir(config.train.save_dir);
            check_sequential_data(config, shape_.decoder.vocab_size);
            data_ = load_train_data(config, shape_.decoder.vocab_size);
        });
        const int64_t rows = (config.train.batch + world.size() - 1) / world.size() * config.text.ctx;
        model_ = source_.load(
            world, [&](int e) { return placement_.owns(groups_.ep().rank(), e); }, rows, /*in_place=*/true);
        decoder_ = source_.load_decoder(world);
        grads_ = make_grads(model_, decoder_);
        register_params(registry_, model_, decoder_, grads_, world, config.train.decay_router,
                        &groups_.expert_replicas());
        adamw_ = std::make_unique<AdamW>(registry_, AdamWConfig(0.9, 0.95, 1e-8, config.train.weight_decay));
        schedule_ = std::make_unique<LrSchedule>(config.train.lr, config.train.min_lr, config.train.warmup_steps,
                                                 std::max(decay_steps(), config.train.warmup_steps));
        trainer_ = std::make_unique<DecoderTrainer>(model_, decoder_, placement_,
                                                    DispatchOptions{config.routing.capacity_factor, 1}, aux_coef_,
                                                    config.train.z_loss_coef);
        moe_ = std::make_unique<Forward>(model_, placement_, config.routing.capacity_factor);
        forward_ = std::make_unique<DecoderForward>(model_, decoder_, *moe_);
        val_ = validation_windows(data_.val, config.text.ctx, config.train.val_windows, world.rank(), world.size());
        const double val_tokens = static_cast<double>(val_.size()) * static_cast<double>(config.text.ctx);
        std::vector<double> bigram = {
            val_.empty() ? 0.0 : bigram_nll(data_.train, val_, shape_.decoder.vocab_size) * val_tokens,
            val_tokens};  // a rank may hold no validation window
        mpi::allreduce<double>(world, bigram, mpi::Op::kSum);
        bigram_ = bigram[0] / bigram[1];
        if (config.policy.name != "none") start_policy(world, config);
        if (!config.train.resume.empty())
            first_step_ =
                resume_train_state(world, config.train.resume, state(0), config.train.steps, registry_, *adamw_);
        if (policy_ && !config.train.resume.empty()) resume_biases(world, config.train.resume);
    }

    // One step; returns its log line. Collective.
    Json step(int s) {
        const TrainConfig& t = config_.train;
        const std::vector<TrainSequence> batch = step_batch(data_, config_, s, world_.rank(), world_.size());
        registry_.zero_grad();
        const TrainTimes before = trainer_->times();
        const double gemm_before = sgemm_seconds();
        const double t0 = mpi::wtime();
        const TrainLosses losses = trainer_->step(groups_.ep(), world_, batch, grads_);
        if (policy_) update_biases(s, losses);
        const double t1 = mpi::wtime();
        allreduce_gradients(registry_);
        const double t2 = mpi::wtime();
        if (s == first_step_ && !t.dump_grads.empty())
            dump_gradients(world_, t.dump_grads, family(), source_.checkpoint_info(), grads_, losses);
        const double norm =
            t.grad_clip > 0 ? clip_grad_norm(registry_, world_, t.grad_clip) : global_grad_norm(registry_, world_);
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
        const TrainTimes& after = trainer_->times();
        const double exchange = after.moe.dispatch + after.moe.combine - before.moe.dispatch - before.moe.combine;
        Json line = {{"step", s},
                     {"lm_loss", losses.lm},
                     {"aux_loss", losses.aux},
                     {"z_loss", losses.z},
                     {"lr", lr},
                     {"grad_norm", norm},
                     {"tokens", losses.tokens},
                     {"tokens_per_s", losses.tokens / (t3 - t0)},
                     {"time_s",
                      {{"step", t3 - t0},
                       {"forward", after.forward - before.forward},
                       {"backward", after.backward - before.backward},
                       {"exchange", exchange},
                       {"experts", after.moe.expert - before.moe.expert},
                       {"gemm", sgemm_seconds() - gemm_before},
                       {"allreduce", t2 - t1},
                       {"optimizer", t3 - t2},
                       {"coordinator", nullptr}}},
                     {"drop_rate", losses.drop_rate},
                     {"load_cv", losses.load_cv},
                     {"gate_entropy", losses.gate_entropy},
                     {"expert_load", load_rows(losses.expert_load, shape_.num_experts)}};
        add_energy(line, t3 - t0, static_cast<double>(batch.size()) * static_cast<double>(config_.text.ctx),
                   losses.tokens);
        return line;
    }

    // J/token of the step over every rank, with the source that measured (or estimated) it; null when none.
    void add_energy(Json& line, double seconds, double local_tokens, int64_t tokens) {
        const WorkCounters work{local_tokens * flops_per_token_, 0.0, seconds};
        const StepEnergy e = energy_.step(seconds, work);
        const double joules = e.rank_joules ? *e.rank_joules : NAN;
        const double total = mpi::allreduce_one<double>(world_, joules, mpi::Op::kSum);
        line["energy"] = {{"source", energy_.source()},
                          {"j_per_token", std::isfinite(total) && tokens > 0 ? Json(total / static_cast<double>(tokens))
                                                                             : Json(nullptr)}};
    }

    // policy.name = aux_free: DeepSeek-V3's bias balancing during training, from the global batch's loads after
    // each step (every rank computes the same biases from the same loads). Other policies are for inference.
    void start_policy(const mpi::Comm& world, const Config& config) {
        mpi::all_or_none(world, [&] {
            if (config.policy.name != "aux_free")
                fail("policy.name ", config.policy.name, ": epmoe train balances with none or aux_free only");
        });
        PolicyContext context;
        context.num_layers = shape_.num_layers;
        context.num_experts = shape_.num_experts;
        context.num_ranks = groups_.ep_size();
        context.seed = config.seed;
        policy_ = make_policy(config.policy, context);
        biases_.assign(static_cast<size_t>(shape_.num_layers) * shape_.num_experts, 0.0f);
    }

    // The policy's update from the step's kept loads [MoE layers, E], placed at their layers' rows.
    void update_biases(int s, const TrainLosses& losses) {
        StepObservation obs;
        obs.step = obs.round = s;
        obs.num_layers = shape_.num_layers;
        obs.num_experts = shape_.num_experts;
        obs.expert_load.assign(biases_.size(), 0);
        size_t row = 0;
        for (int l = 0; l < shape_.num_layers; ++l) {
            if (model_.layers[static_cast<size_t>(l)].dense) continue;
            for (int e = 0; e < shape_.num_experts; ++e)
                obs.expert_load[static_cast<size_t>(l) * shape_.num_experts + e] =
                    static_cast<int64_t>(losses.expert_load[row * shape_.num_experts + e]);
            ++row;
        }
        policy_->update(obs, biases_);
        trainer_->set_biases(biases_);
    }

    // --resume: the biases trainer_state.json kept (written by the same policy), so the run goes on bit for bit.
    void resume_biases(const mpi::Comm& world, const std::string& dir) {
        mpi::all_or_none(world, [&] {
            std::ifstream in(dir + "/" + kTrainerStateFile);
            const Json j = in ? Json::parse(in, nullptr, false) : Json();
            const Json* b = j.is_object() && j.contains("routing_biases") ? &j["routing_biases"] : nullptr;
            if (!b || !b->contains("policy") || (*b)["policy"] != config_.policy.name || !(*b)["biases"].is_array() ||
                (*b)["biases"].size() != biases_.size())
                fail(dir, "/", kTrainerStateFile, ": routing_biases: not those of policy ", config_.policy.name,
                     " for ", shape_.num_layers, " x ", shape_.num_experts, " experts");
            biases_ = (*b)["biases"].get<std::vector<float>>();
        });
        trainer_->set_biases(biases_);
    }

    double validate() { return last_val_ = validation_loss(groups_, model_, *forward_, val_, biases_); }

    // Writes the checkpoint after `steps_done` steps, with the optimizer state beside it. Collective.
    void save(int64_t steps_done) {
        mpi::all_or_none(world_, [&] { check_finite_weights(registry_, steps_done - 1); });
        CheckpointWriteOptions options;
        options.router_aux_loss_coef = aux_coef_;
        const Json state_now = state(steps_done);
        options.write_extra = [&](const std::string& tmp) {
            write_train_state(tmp, world_.rank(), world_.size(), registry_, *adamw_, state_now);
        };
        write_checkpoint(world_, config_.train.save_dir, family(), model_, decoder_, options);
    }

    // trainer_state.json after `steps_done` steps: what --resume restores and checks (train_state.hpp).
    Json state(int64_t steps_done) const {
        const TrainConfig& t = config_.train;
        return {
            {"step", steps_done},
            {"optimizer_steps", adamw_->steps()},
            {"seed", config_.seed},
            {"layout",
             {{"ranks", world_.size()}, {"ep_size", groups_.ep_size()}, {"placement", config_.placement.name}}},
            {"data", {{"source", data_.source}, {"sampler", t.sampler}, {"batch", t.batch}, {"ctx", config_.text.ctx}}},
            {"lr_schedule",
             {{"lr", t.lr},
              {"min_lr", t.min_lr},
              {"warmup_steps", t.warmup_steps},
              {"decay_steps", decay_steps()},
              {"next_lr", schedule_->at(steps_done)}}},
            {"routing_biases", {{"policy", config_.policy.name}, {"biases", biases_}}},
            {"epmoe_version", version()}};
    }
    Family family() const { return config_.model.path.empty() ? family_of(config_.train.family) : source_.family(); }
    int decay_steps() const { return config_.train.decay_steps > 0 ? config_.train.decay_steps : config_.train.steps; }
    int64_t first_step() const { return first_step_; }
    void set_progress(DecoderTrainer::Progress progress) { trainer_->set_progress(std::move(progress)); }

    Json summary() const {
        return {{"ranks", world_.size()},
                {"ep_size", groups_.ep_size()},
                {"dp_size", groups_.dp_size()},
                {"steps", config_.train.steps},
                {"data", data_.source},
                {"tokens_total", tokens_},
                {"seconds", seconds_},
                {"weight_grad_gemm", sgemm_weight_grad_library()},
                {"tokens_per_s", seconds_ > 0 ? Json(tokens_ / seconds_) : Json(nullptr)},
                {"final_lm_loss", last_loss_},
                {"final_val_loss", last_val_},
                {"bigram_val_loss", bigram_},
                {"checkpoint", config_.train.save_dir.empty() ? Json(nullptr) : Json(config_.train.save_dir)}};
    }
    double bigram() const { return bigram_; }
    std::vector<int32_t> scored_val_tokens() const {
        return validation_tokens(data_.val, config_.text.ctx, config_.train.val_windows);
    }
    const TrainGroups& groups() const { return groups_; }

private:
    const mpi::Comm& world_;
    const Config& config_;
    ModelSource source_;
    const ModelShape shape_;
    const TrainGroups groups_;  // before placement_: the placement spans one group
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
    HostEnergy energy_;
    double flops_per_token_ = 0;
    double aux_coef_ = 0;             // the load-balancing loss' weight (a checkpoint's config.json read once)
    std::unique_ptr<Policy> policy_;  // aux_free, or null
    std::vector<float> biases_;       // [L, E] the policy's selection biases; empty without one
    double bigram_ = 0, seconds_ = 0, last_loss_ = NAN, last_val_ = NAN;
    int64_t first_step_ = 0;  // the first step this run makes: 0, or the steps a resumed checkpoint had done
    int64_t tokens_ = 0;
};

bool due(int step, int steps, int every) { return step + 1 == steps || (every > 0 && (step + 1) % every == 0); }

}  // namespace

int train(const mpi::Comm& world, const Config& given) {
    const Config config = resume_config(world, given);  // --resume DIR: the weights from DIR
    set_up_rank(world, config);
    Trainer trainer(world, config);
    TrainLog log(world, config);
    const bool talk = world.rank() == 0 && !config.output.quiet;
    if (talk)
        std::fprintf(stderr, "epmoe train: %d steps, ep_size %d x dp_size %d; bigram model's validation loss %.4f\n",
                     config.train.steps, trainer.groups().ep_size(), trainer.groups().dp_size(), trainer.bigram());
    double last_print = mpi::wtime(), step_start = last_print;
    int step = 0;
    if (talk)  // a line inside a long step too (a large model, batch or context): which layer it has reached
        trainer.set_progress([&](const char* where, int index, int count) {
            const double now = mpi::wtime();
            if (now - last_print <= config.output.progress_interval_s) return;
            last_print = now;
            std::fprintf(stderr, "epmoe train: step %d/%d: %s %d of %d, %.0f s into the step\n", step + 1,
                         config.train.steps, where, index + 1, count, now - step_start);
        });
    for (int s = static_cast<int>(trainer.first_step()); s < config.train.steps; ++s) {
        step = s, step_start = mpi::wtime();
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
        if (!config.train.save_dir.empty() && due(s, config.train.steps, config.train.save_every)) trainer.save(s + 1);
    }
    Json summary = trainer.summary();
    if (talk)
        std::printf("epmoe train: final loss %.4f, validation %.4f (bigram %.4f), %.0f tokens/s\n",
                    summary["final_lm_loss"].get<double>(), summary["final_val_loss"].get<double>(), trainer.bigram(),
                    summary["tokens_per_s"].is_number() ? summary["tokens_per_s"].get<double>() : 0.0);
    log.finish(summary, trainer.scored_val_tokens(), config.text.ctx);
    return 0;
}

}  // namespace epmoe
