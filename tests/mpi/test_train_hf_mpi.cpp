// One training step of the whole decoder (train/decoder_train.hpp) against Hugging Face transformers' own
// autograd (tests/fixtures/models/*/grads.safetensors, make_hf_grads.py): for the five transformers-written
// models, the LM loss, the unscaled auxiliary loss and the gradient of lm_loss + router_aux_loss_coef * aux_loss
// of every tensor, at 1-4 ranks, the three sequences spread over the ranks and the experts sharded. HF's
// gradients are read by epmoe's own checkpoint loader (grads.safetensors holds them under the file's names),
// so each tensor is compared in place: the replicated ones summed over ranks, each expert on its owner.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "epmoe/io/safetensors.hpp"
#include "epmoe/io/tokens.hpp"
#include "epmoe/model/checkpoint.hpp"
#include "epmoe/ops/loss.hpp"
#include "epmoe/train/decoder_train.hpp"
#include "epmoe/train/optim.hpp"

namespace epmoe {
namespace {

namespace fs = std::filesystem;
const std::string kModels = std::string(EPMOE_FIXTURES) + "/models/";

// HF's gradients as a checkpoint: a scratch folder with the model's config.json and grads.safetensors as its
// model.safetensors (rank 0 makes it; every rank reads it).
std::string grads_checkpoint(const mpi::Comm& comm, const std::string& folder) {
    const std::string dir = (fs::temp_directory_path() / ("epmoe-hf-grads-" + folder)).string();
    if (comm.rank() == 0) {
        fs::remove_all(dir);
        fs::create_directories(dir);
        fs::copy_file(kModels + folder + "/config.json", dir + "/config.json");
        fs::copy_file(kModels + folder + "/grads.safetensors", dir + "/model.safetensors");
    }
    mpi::barrier(comm);
    return dir;
}

float scalar(const std::string& folder, const char* name) {
    const SafetensorsFile f = SafetensorsFile::open(kModels + folder + "/grads.safetensors");
    std::vector<float> v(1);
    f.read_f32(f.at(name), v);
    return v[0];
}

double rel_l2(const std::vector<float>& got, const std::vector<float>& want) {
    double num = 0, den = 0;
    for (size_t i = 0; i < want.size(); ++i)
        num += (got[i] - want[i]) * double(got[i] - want[i]), den += double(want[i]) * want[i];
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Compares one tensor (replicated ones summed over ranks first); returns its relative L2.
double check(const mpi::Comm& comm, std::vector<float> got, const std::vector<float>& want, bool replicated,
             const std::string& what) {
    EXPECT_EQ(got.size(), want.size()) << what;
    if (replicated) mpi::allreduce<float>(comm, got, mpi::Op::kSum);
    if (got.size() != want.size()) return 1;
    const double r = rel_l2(got, want);
    EXPECT_LT(r, 1e-4) << what;
    return r;
}

double compare_grads(const mpi::Comm& comm, const ModelGrads& g, const Model& hf, const DecoderWeights& hf_dec) {
    double worst = 0;
    auto c = [&](const std::vector<float>& got, const std::vector<float>& want, bool rep, const std::string& w) {
        worst = std::max(worst, check(comm, got, want, rep, w));
    };
    c(g.decoder.embed, hf_dec.embed, true, "embed");
    c(g.decoder.final_norm, hf_dec.final_norm, true, "final norm");
    c(g.decoder.lm_head, hf_dec.lm_head, true, "lm_head");
    for (size_t l = 0; l < g.model.layers.size(); ++l) {
        const AttentionWeights &a = g.decoder.layers[l], &b = hf_dec.layers[l];
        const std::string p = "layer " + std::to_string(l) + " ";
        c(a.input_norm, b.input_norm, true, p + "input norm");
        c(a.wq, b.wq, true, p + "q"), c(a.wk, b.wk, true, p + "k"), c(a.wv, b.wv, true, p + "v");
        c(a.wo, b.wo, true, p + "o"), c(a.bq, b.bq, true, p + "bq"), c(a.bk, b.bk, true, p + "bk");
        c(a.bv, b.bv, true, p + "bv"), c(a.q_norm, b.q_norm, true, p + "q_norm"),
            c(a.k_norm, b.k_norm, true, p + "k_norm");
        const MoeLayer &m = g.model.layers[l], &h = hf.layers[l];
        c(m.norm, h.norm, true, p + "post-attention norm");
        c(m.gate, h.gate, true, p + "router");
        for (const auto& [e, w] : m.experts) {
            c(w.w13, h.experts.at(e).w13, false, p + "expert " + std::to_string(e) + " w1|w3");
            c(w.w2, h.experts.at(e).w2, false, p + "expert " + std::to_string(e) + " w2");
        }
        if (m.dense)
            c(m.dense->w.w13, h.dense->w.w13, true, p + "dense w13"),
                c(m.dense->w.w2, h.dense->w.w2, true, p + "dense w2");
        if (m.shared_expert) {
            c(m.shared_expert->w.w13, h.shared_expert->w.w13, true, p + "shared w13");
            c(m.shared_expert->w.w2, h.shared_expert->w.w2, true, p + "shared w2");
            c(m.shared_expert_gate, h.shared_expert_gate, true, p + "shared gate");
        }
    }
    return worst;
}

class TrainHf : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainHf, LossesAndGradientsMatchHfAutograd) {
    const mpi::Comm comm(MPI_COMM_WORLD);
    const std::string folder = GetParam();
    const auto fp32 = make_mlp_kernel("openblas", "fp32");
    Checkpoint ck = Checkpoint::open(kModels + folder, ModelConfig{});
    ck.require_decoder();
    const ModelShape& shape = ck.info().shape;
    const int layers = shape.num_layers;
    const Placement placement = Placement::make("contiguous", shape.num_experts, comm.size());
    const Model model = ck.load(
        0, layers - 1, [&](int e) { return placement.owns(comm.rank(), e); }, fp32);
    const DecoderWeights decoder = ck.load_decoder(0, layers - 1);
    const TokenFile ids = read_tokens(kModels + folder + "/input_ids.safetensors", shape.decoder.vocab_size);
    const IndexRange mine = split_over_ranks(ids.num_sequences, comm.rank(), comm.size());
    std::vector<TrainSequence> batch;
    for (int64_t b = mine.begin; b < mine.end; ++b) {
        TrainSequence& q = batch.emplace_back();
        q.ids.assign(ids.ids.begin() + b * ids.seq_len, ids.ids.begin() + (b + 1) * ids.seq_len);
        q.targets.assign(q.ids.begin() + 1, q.ids.end());
        q.targets.push_back(kIgnoreIndex);
    }
    const double coef = scalar(folder, "router_aux_loss_coef");
    DecoderTrainer trainer(model, decoder, placement, DispatchOptions{}, coef);
    ModelGrads grads = make_grads(model, decoder);
    const TrainLosses losses = trainer.step(comm, batch, grads);
    EXPECT_NEAR(losses.lm, scalar(folder, "lm_loss"), 1e-5 * losses.lm);
    EXPECT_NEAR(losses.aux, scalar(folder, "aux_loss"), 1e-5 * losses.aux);
    Checkpoint hf_ck = Checkpoint::open(grads_checkpoint(comm, folder), ModelConfig{});
    hf_ck.require_decoder();
    const Model hf = hf_ck.load(
        0, layers - 1, [&](int e) { return placement.owns(comm.rank(), e); }, fp32);
    const DecoderWeights hf_dec = hf_ck.load_decoder(0, layers - 1);
    const double worst = compare_grads(comm, grads, hf, hf_dec);
    if (comm.rank() == 0)
        std::printf("%s at %d ranks: lm %.7g (HF %.7g), aux %.7g (HF %.7g), worst gradient rel L2 %.2g\n",
                    folder.c_str(), comm.size(), losses.lm, scalar(folder, "lm_loss"), losses.aux,
                    scalar(folder, "aux_loss"), worst);
}

// The LM head runs in chunks of at most 512 rows (decoder_train.cpp): a step on two sequences of 300 tokens (600
// rows: two chunks) gives, with the LM loss alone (additive over sequences), the mean of the gradients of a step
// on each alone (300 rows: one chunk). Each rank on its own (MPI_COMM_SELF, every expert local).
TEST(TrainHeadChunks, TwoChunksGiveTheMeanOfOneChunkEach) {
    const mpi::Comm self(MPI_COMM_SELF);
    const auto fp32 = make_mlp_kernel("openblas", "fp32");
    Checkpoint ck = Checkpoint::open(kModels + "mixtral", ModelConfig{});
    ck.require_decoder();
    const ModelShape& shape = ck.info().shape;
    const Placement placement = Placement::make("contiguous", shape.num_experts, 1);
    const Model model = ck.load(
        0, shape.num_layers - 1, [](int) { return true; }, fp32);
    const DecoderWeights decoder = ck.load_decoder(0, shape.num_layers - 1);
    std::vector<TrainSequence> both(2);
    for (int b = 0; b < 2; ++b)
        for (int t = 0; t < 300; ++t) {
            both[b].ids.push_back((b * 7919 + t * 104729) % shape.decoder.vocab_size);
            both[b].targets.push_back(t + 1 < 300 ? (b * 31 + t * 613) % shape.decoder.vocab_size : kIgnoreIndex);
        }
    auto gradients = [&](std::span<const TrainSequence> batch) {
        DecoderTrainer trainer(model, decoder, placement, DispatchOptions{}, 0.0);
        ModelGrads grads = make_grads(model, decoder);
        trainer.step(self, batch, grads);
        return grads;
    };
    const ModelGrads together = gradients(both);
    ModelGrads mean = gradients(std::span<const TrainSequence>(both).first(1));
    ModelGrads second = gradients(std::span<const TrainSequence>(both).last(1));
    ParamRegistry a, b;  // each gradient tensor as a registry's value, in one order: mean = (first + second) / 2
    register_params(a, mean.model, mean.decoder, mean, self, false);
    register_params(b, second.model, second.decoder, second, self, false);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i)
        for (size_t j = 0; j < a[i].value.size(); ++j) a[i].value[j] = 0.5f * (a[i].value[j] + b[i].value[j]);
    EXPECT_LT(compare_grads(self, together, mean.model, mean.decoder), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Models, TrainHf,
                         ::testing::Values("mixtral", "mixtral_bf16_sharded", "olmoe", "qwen2_moe", "qwen3_moe"));

}  // namespace
}  // namespace epmoe
