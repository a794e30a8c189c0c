// The parts of `epmoe train` (app/train.cpp) that stand alone: the auxiliary-loss coefficient, the family a
// from-scratch model is saved as, the validation loss, the FLOPs a token for the energy estimate, the loads as
// log rows, and rank 0's train_log.jsonl / summary.json writer.
#pragma once

#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "epmoe/base/config.hpp"
#include "epmoe/base/json.hpp"
#include "epmoe/base/shape.hpp"
#include "epmoe/comm/mpi.hpp"
#include "epmoe/io/results.hpp"
#include "epmoe/model/arch.hpp"
#include "epmoe/model/decoder_forward.hpp"
#include "epmoe/train/decoder_train.hpp"
#include "epmoe/train/groups.hpp"

namespace epmoe {

// The load-balancing loss' weight: train.aux_loss_coef, or a checkpoint's router_aux_loss_coef, else the
// family's default in transformers (OlmoeConfig 0.01; MixtralConfig, Qwen2MoeConfig, Qwen3MoeConfig 0.001);
// 0.01 for the synthetic model.
double aux_coef(const Config& config, Family family);

// The family named train.family; fails naming it when it is none.
Family family_of(const std::string& name);

// The mean NLL of the validation windows (every rank's share) under the current weights, routed with biases
// ([L, E] or empty): tokens exchanged in this rank's group, the NLL summed over the world; a forward for each
// 1,024 rows or so of windows. Collective.
double validation_loss(const TrainGroups& groups, const Model& model, DecoderForward& forward,
                       const std::vector<TrainSequence>& windows, std::span<const float> biases);

// FLOPs of a training step a token, by the 6 N rule (N: the weights a token multiplies: attention, router, top_k
// experts, LM head; dense and shared MLPs left out): the work the `estimated` energy source prices.
double train_flops_per_token(const ModelShape& s);

// The [MoE layers, E] loads as rows of integers for the log.
Json load_rows(const std::vector<double>& load, int num_experts);

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
    // summary.json, and val_tokens.safetensors: the validation windows' tokens (input_ids I32 [N]), which `epmoe
    // eval --ctx C+1 --stride C` scores as train's validation did; summary's eval_check says that command.
    void finish(Json summary, const std::vector<int32_t>& val_tokens, int64_t ctx) {
        if (!rank0_) return;
        log_.close();
        if (!val_tokens.empty()) write_val_tokens(summary, val_tokens, ctx);
        summary["run"] = {
            {"epmoe_version", version()}, {"command_line", config_.command_line}, {"finished_utc", utc_now()}};
        writer_->finish(*config_.json, summary);
        if (!config_.output.quiet && summary.value("eval_check", Json()).is_string())
            std::printf("epmoe train: the last validation loss again: %s\n",
                        summary["eval_check"].get<std::string>().c_str());
        std::printf("results: %s\n", dir_.c_str());
    }

private:
    void write_val_tokens(Json& summary, const std::vector<int32_t>& tokens, int64_t ctx);

    bool rank0_;
    const Config& config_;
    std::string dir_;
    std::unique_ptr<ResultsWriter> writer_;
    std::ofstream log_;
};

}  // namespace epmoe
