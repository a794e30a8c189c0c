// `epmoe train`'s command line.
#include "app/cli_job.hpp"
#include "app/train.hpp"

namespace epmoe::cli {
namespace {

// train's defaults: a small byte-level model (vocabulary 256) on the corpus, FP32 on oneDNN: the validation's
// forward on the kernel whose GEMMs the training forward runs (ops/sgemm.hpp), so the two give the same bits.
Json train_defaults() {
    Json d = default_config();
    const Json shape = {{"vocab_size", 256}, {"d_model", 128},    {"d_ff", 256},   {"num_layers", 2},
                        {"num_heads", 4},    {"num_kv_heads", 2}, {"head_dim", 32}};
    for (const auto& [k, v] : shape.items()) d["model"][k] = v;
    d["text"]["ctx"] = 128;
    d["compute"]["backend"] = "onednn";
    return d;
}

}  // namespace

int train_command(const mpi::Comm& world, const std::vector<std::string>& args, const std::string& command_line) {
    std::vector<Shorthand> shorthands = {
        {"model", "model.path", "checkpoint to fine-tune (default: the synthetic shape, from scratch)"},
        {"init", "train.family", "from scratch (no --model): the synthetic shape (model.* keys), saved as this family"},
        {"data", "train.data", "token file to train on (default: the bytes of train.corpus)"},
        {"val-data", "train.val_data", "token file to validate on (default: the data's held-out tail)"},
        {"text", "train.text", "UTF-8 text to train on: --model's tokenizer's ids (no --model: its bytes)"},
        {"val-text", "train.val_text", "UTF-8 text to validate on, tokenized as --text"},
        {"tokenizer", "text.tokenizer", "auto | json | sp (--model's tokenizer files) or a PATH, for --text"},
        {"ctx", "text.ctx", "tokens a training window reads"},
        {"batch", "train.batch", "windows in a step's global batch, split over the ranks"},
        {"ep-size", "train.ep_size", "ranks of an expert-parallel group (divides the ranks); 0 = all (pure EP)"},
        {"steps", "train.steps", "optimizer steps"},
        {"lr", "train.lr", "peak learning rate (warmup then cosine to train.min_lr)"},
        {"aux-loss-coef", "train.aux_loss_coef",
         "load-balancing loss weight; < 0 = the checkpoint's (else the family's HF default)"},
        {"z-loss-coef", "train.z_loss_coef", "router z-loss weight (ST-MoE); 0 = off"},
        {"policy", "policy.name", "none | aux_free: DeepSeek-V3's bias balancing after each step"},
        {"save", "train.save_dir", "write the trained model here as a Hugging Face checkpoint"},
        {"save-every", "train.save_every", "steps between saves (0: at the end only)"},
        {"eval-every", "train.eval_every", "steps between validations (0: at the end only)"},
        {"capacity-factor", "routing.capacity_factor", "expert capacity factor X > 0; 0 = dropless"},
        {"out", "output.dir", "results directory (default: results/<UTC timestamp>-train)"},
        {"seed", "seed", "seed of the synthetic model and the batch sampler"},
        {"resume", "train.resume", "continue a run from a checkpoint --save wrote (weights, moments, step)"},
        {"sampler", "train.sampler", "random (seeded windows) or sequential (the data's rows in order)"},
        {"dump-grads", "train.dump_grads", "write the first step's gradients (HF names, F32) to this file"},
    };
    std::optional<Config> config = parse_job(
        world, args, "train", shorthands, train_defaults(),
        "usage: epmoe train [--model DIR] [--data FILE] [--steps N] [--save DIR] [options]\n\n"
        "Trains the whole model with the experts sharded over each group of --ep-size ranks (default: all of\n"
        "them), the groups data-parallel replicas: AdamW, global-norm clipping, warmup + cosine schedule, LM +\n"
        "load-balancing loss. With no files: a small byte-level MoE on the fortunes corpus, validated against\n"
        "a bigram model.\n",
        command_line);
    return config ? train(world, *config) : 0;
}

}  // namespace epmoe::cli
