// write_checkpoint (src/model/checkpoint_write.cpp) at 1-4 ranks: a synthetic model of each family (Mixtral with
// a sliding window; OLMoE with whole q/k norms and all four attention biases; Qwen2-MoE with a dense layer, shared
// experts, q/k/v biases and tied embeddings; Qwen3-MoE with per-head q/k norms and head_dim != d_model / heads),
// each rank holding its experts (one expert on two ranks), written and read back with Checkpoint::open,
// require_decoder, load (every expert) and load_decoder: every tensor bit for bit, the shape and layer kinds
// alike. Then the directory rules: an epmoe checkpoint is replaced, a leftover temporary directory cleared, a
// foreign directory refused on every rank, and a model the family cannot describe refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "epmoe/base/error.hpp"
#include "epmoe/base/json.hpp"
#include "epmoe/comm/mpi.hpp"
#include "epmoe/model/checkpoint.hpp"
#include "epmoe/model/checkpoint_write.hpp"
#include "epmoe/model/synthetic.hpp"

namespace epmoe {
namespace {

namespace fs = std::filesystem;

struct WriteCase {
    Family family;
    ModelShape shape;
    std::vector<int> dense_layers;  // Qwen2-MoE's mlp_only_layers
    bool shared_expert = false;
    bool o_bias = false;  // OLMoE's attention_bias: an o_proj bias beside q/k/v's
};

ModelShape case_shape(int d, int d_ff, int experts, int layers, int heads, int kv, int head_dim, QkNorm qk) {
    ModelShape s;
    s.num_layers = layers, s.d_model = d, s.d_ff = d_ff, s.num_experts = experts, s.top_k = 2;
    s.rms_norm_eps = 1e-5;
    s.decoder.vocab_size = 64, s.decoder.num_heads = heads, s.decoder.num_kv_heads = kv;
    s.decoder.head_dim = head_dim, s.decoder.rope_theta = 10000.0, s.decoder.qk_norm = qk;
    return s;
}

std::vector<WriteCase> write_cases() {
    std::vector<WriteCase> cases;
    cases.push_back({Family::kMixtral, case_shape(32, 48, 4, 2, 4, 2, 8, QkNorm::kNone)});
    cases.back().shape.decoder.sliding_window = 4;
    cases.push_back({Family::kOlmoe, case_shape(32, 24, 5, 2, 4, 4, 8, QkNorm::kWhole)});
    cases.back().shape.norm_topk_prob = false;
    cases.back().shape.decoder.qkv_bias = true;
    cases.back().o_bias = true;
    cases.push_back({Family::kQwen2Moe, case_shape(32, 16, 6, 3, 4, 2, 8, QkNorm::kNone), {1}, true});
    cases.back().shape.decoder.qkv_bias = true;
    cases.back().shape.decoder.tie_word_embeddings = true;
    cases.back().shape.norm_topk_prob = false;
    cases.push_back({Family::kQwen3Moe, case_shape(48, 24, 4, 2, 4, 2, 16, QkNorm::kPerHead)});
    return cases;
}

// Values in [-1, 1) from the seed and a tensor id: what the norms, dense and shared MLPs and biases hold.
std::vector<float> draw(size_t n, uint64_t id) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = 2 * hash_uniform(99, id, i, 0) - 1;
    return v;
}

DenseMlp draw_mlp(int d, int d_ff, uint64_t id) {
    return DenseMlp{d_ff, {draw(2 * d_ff * d, id), draw(d * d_ff, id + 1)}};
}

// The case's model with the experts owns(layer, expert) says, and its decoder, the same on every rank.
std::pair<Model, DecoderWeights> build(const WriteCase& c, const std::function<bool(int, int)>& owns) {
    Model m = make_synthetic_model(c.shape, 5, owns);
    const int d = c.shape.d_model;
    for (int l = 0; l < c.shape.num_layers; ++l) {
        MoeLayer& layer = m.layers[l];
        layer.norm = draw(d, 100 + l);
        if (std::count(c.dense_layers.begin(), c.dense_layers.end(), l)) {
            layer.gate.clear();
            layer.experts.clear();
            layer.dense = draw_mlp(d, 40, 200 + 10 * l);
        } else if (c.shared_expert) {
            layer.shared_expert = draw_mlp(d, 24, 300 + 10 * l);
            layer.shared_expert_gate = draw(d, 400 + l);
        }
    }
    DecoderWeights w = make_synthetic_decoder(c.shape, 6);
    w.final_norm = draw(d, 500);
    for (size_t l = 0; l < w.layers.size(); ++l) {
        AttentionWeights& a = w.layers[l];
        a.input_norm = draw(d, 600 + l);
        if (!a.q_norm.empty()) a.q_norm = draw(a.q_norm.size(), 700 + l), a.k_norm = draw(a.k_norm.size(), 800 + l);
        if (c.o_bias) a.bo = draw(d, 900 + l);
    }
    return {std::move(m), std::move(w)};
}

// A directory name every rank shares, under a fresh temporary directory rank 0 made.
std::string shared_dir(const mpi::Comm& comm) {
    std::string base;
    if (comm.rank() == 0) {
        char tmpl[] = "/tmp/epmoe_ckpt_write_XXXXXX";
        EXPECT_NE(mkdtemp(tmpl), nullptr);
        base = tmpl;
    }
    return mpi::allgather_strings(comm, base)[0];
}

void expect_same_mlp(const ExpertWeights& got, const ExpertWeights& want, const std::string& what) {
    EXPECT_EQ(got.w13, want.w13) << what;
    EXPECT_EQ(got.w2, want.w2) << what;
}

void expect_same(const Model& got, const DecoderWeights& got_dec, const Model& want, const DecoderWeights& want_dec) {
    ASSERT_EQ(got.layers.size(), want.layers.size());
    for (size_t l = 0; l < want.layers.size(); ++l) {
        const MoeLayer &g = got.layers[l], &w = want.layers[l];
        const std::string at = "layer " + std::to_string(l);
        EXPECT_EQ(g.norm, w.norm) << at;
        EXPECT_EQ(g.gate, w.gate) << at;
        ASSERT_EQ(g.experts.size(), w.experts.size()) << at;
        for (const auto& [e, ew] : w.experts) expect_same_mlp(g.experts.at(e), ew, at + " expert " + std::to_string(e));
        ASSERT_EQ(g.dense.has_value(), w.dense.has_value()) << at;
        if (w.dense) expect_same_mlp(g.dense->w, w.dense->w, at + " dense");
        ASSERT_EQ(g.shared_expert.has_value(), w.shared_expert.has_value()) << at;
        if (w.shared_expert) expect_same_mlp(g.shared_expert->w, w.shared_expert->w, at + " shared");
        EXPECT_EQ(g.shared_expert_gate, w.shared_expert_gate) << at;
    }
    EXPECT_EQ(got_dec.embed, want_dec.embed);
    EXPECT_EQ(got_dec.final_norm, want_dec.final_norm);
    EXPECT_EQ(got_dec.lm_head, want_dec.lm_head);
    ASSERT_EQ(got_dec.layers.size(), want_dec.layers.size());
    for (size_t l = 0; l < want_dec.layers.size(); ++l) {
        const AttentionWeights &g = got_dec.layers[l], &w = want_dec.layers[l];
        for (auto part :
             {&AttentionWeights::input_norm, &AttentionWeights::wq, &AttentionWeights::wk, &AttentionWeights::wv,
              &AttentionWeights::wo, &AttentionWeights::bq, &AttentionWeights::bk, &AttentionWeights::bv,
              &AttentionWeights::bo, &AttentionWeights::q_norm, &AttentionWeights::k_norm})
            EXPECT_EQ(g.*part, w.*part) << "attention of layer " << l;
    }
}

void expect_same_shape(const ModelShape& got, const ModelShape& want) {
    EXPECT_EQ(got.num_layers, want.num_layers);
    EXPECT_EQ(got.d_model, want.d_model);
    EXPECT_EQ(got.d_ff, want.d_ff);
    EXPECT_EQ(got.num_experts, want.num_experts);
    EXPECT_EQ(got.top_k, want.top_k);
    EXPECT_EQ(got.norm_topk_prob, want.norm_topk_prob);
    EXPECT_EQ(got.rms_norm_eps, want.rms_norm_eps);
    const DecoderShape &g = got.decoder, &w = want.decoder;
    EXPECT_EQ(g.vocab_size, w.vocab_size);
    EXPECT_EQ(g.num_heads, w.num_heads);
    EXPECT_EQ(g.num_kv_heads, w.num_kv_heads);
    EXPECT_EQ(g.head_dim, w.head_dim);
    EXPECT_EQ(g.rope_theta, w.rope_theta);
    EXPECT_EQ(g.sliding_window, w.sliding_window);
    EXPECT_EQ(g.qkv_bias, w.qkv_bias);
    EXPECT_EQ(g.qk_norm, w.qk_norm);
    EXPECT_EQ(g.tie_word_embeddings, w.tie_word_embeddings);
}

TEST(CheckpointWriteMpi, EveryFamilyReadsBackBitForBit) {
    mpi::Comm comm(MPI_COMM_WORLD);
    const std::string base = shared_dir(comm);
    const int rank = comm.rank(), ranks = comm.size();
    // Expert e on rank e % P; expert 0 also on the last rank (the lowest holder writes it).
    auto owns = [&](int, int e) { return e % ranks == rank || (e == 0 && rank == ranks - 1); };
    for (const WriteCase& c : write_cases()) {
        SCOPED_TRACE(family_name(c.family));
        auto [model, decoder] = build(c, owns);
        const std::string dir = base + "/" + family_name(c.family);
        write_checkpoint(comm, dir, c.family, model, decoder);
        EXPECT_FALSE(fs::exists(dir + ".tmp"));
        EXPECT_TRUE(fs::exists(dir + "/" + kCheckpointMarker));
        Checkpoint ck = Checkpoint::open(dir, ModelConfig{});
        ck.require_decoder();
        EXPECT_EQ(ck.info().family, c.family);
        EXPECT_EQ(ck.info().files.size(), static_cast<size_t>(std::min(ranks, c.shape.num_experts)));
        ModelShape want_shape = c.shape;
        want_shape.decoder.qkv_bias = c.shape.decoder.qkv_bias || c.o_bias;
        expect_same_shape(ck.info().shape, want_shape);
        EXPECT_EQ(ck.info().dense_d_ff, c.dense_layers.empty() ? 0 : 40);
        EXPECT_EQ(ck.info().shared_d_ff, c.shared_expert ? 24 : 0);
        const Model got = ck.load(0, c.shape.num_layers - 1, [](int) { return true; });
        const DecoderWeights got_decoder = ck.load_decoder(0, c.shape.num_layers - 1);
        auto [whole, whole_decoder] = build(c, [](int, int) { return true; });
        expect_same(got, got_decoder, whole, whole_decoder);
        mpi::barrier(comm);  // every rank has read before the next case (or the clean-up) writes
    }
    if (rank == 0) fs::remove_all(base);
}

// Throws on this rank the AgreedError write_checkpoint must raise on every rank alike, and returns its message.
std::string agreed_error(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const AgreedError& e) {
        return e.what();
    }
    ADD_FAILURE() << "no AgreedError";
    return "";
}

TEST(CheckpointWriteMpi, ReplacesOnlyEpmoeCheckpoints) {
    mpi::Comm comm(MPI_COMM_WORLD);
    const std::string base = shared_dir(comm);
    const WriteCase c = write_cases()[0];
    auto built = build(c, [&](int, int e) { return e % comm.size() == comm.rank(); });
    Model& model = built.first;
    const DecoderWeights& decoder = built.second;
    const std::string dir = base + "/ckpt";
    write_checkpoint(comm, dir + "/", c.family, model, decoder);  // a trailing slash names the same directory
    EXPECT_TRUE(fs::exists(dir + "/config.json"));
    if (comm.rank() == 0) {  // a killed run's leftovers: an unfinished temporary directory
        fs::create_directories(dir + ".tmp");
        std::ofstream(dir + ".tmp/" + kCheckpointMarker) << "{}";
        std::ofstream(dir + ".tmp/model-00001-of-00002.safetensors") << "partial";
    }
    mpi::barrier(comm);
    write_checkpoint(comm, dir, c.family, model, decoder);  // replaces the checkpoint, clears the leftovers
    EXPECT_FALSE(fs::exists(dir + ".tmp"));
    EXPECT_FALSE(fs::exists(dir + ".old"));
    EXPECT_NO_THROW(Checkpoint::open(dir, ModelConfig{}));
    mpi::barrier(comm);

    const std::string foreign = base + "/foreign";  // not an epmoe checkpoint: refused, left as it was
    if (comm.rank() == 0) {
        fs::create_directories(foreign);
        std::ofstream(foreign + "/notes.txt") << "mine";
    }
    mpi::barrier(comm);
    const std::string message = agreed_error([&] { write_checkpoint(comm, foreign, c.family, model, decoder); });
    EXPECT_NE(message.find("is not an epmoe checkpoint"), std::string::npos) << message;
    EXPECT_NE(message.find(foreign), std::string::npos) << message;
    EXPECT_TRUE(fs::exists(foreign + "/notes.txt"));
    EXPECT_FALSE(fs::exists(foreign + ".tmp"));

    // A dense layer in a family without mlp_only_layers: refused before anything is written.
    Model dense = build(c, [&](int, int e) { return e % comm.size() == comm.rank(); }).first;
    dense.layers[1].dense = draw_mlp(c.shape.d_model, 8, 1);
    const std::string bad = agreed_error([&] { write_checkpoint(comm, base + "/dense", c.family, dense, decoder); });
    EXPECT_NE(bad.find("mixtral has no dense layers"), std::string::npos) << bad;
    EXPECT_FALSE(fs::exists(base + "/dense.tmp"));
    // An expert no rank holds.
    for (auto& layer : model.layers) layer.experts.erase(0);
    const std::string missing = agreed_error([&] { write_checkpoint(comm, base + "/none", c.family, model, decoder); });
    EXPECT_NE(missing.find("expert 0 of layer 0 is held by no rank"), std::string::npos) << missing;
    mpi::barrier(comm);
    if (comm.rank() == 0) fs::remove_all(base);
}

// transformers 5.17's own checkpoints (tests/fixtures/models) read, written again at P ranks and read back: the
// same tensors bit for bit, and a config.json whose keys agree with the one transformers wrote wherever both
// have the key (the written one adds v4 names: rope_theta, torch_dtype; head_dim where v5 wrote null; Qwen's
// sliding_window is null where v5 wrote 0: neither applies with use_sliding_window false). With
// EPMOE_CHECKPOINT_WRITE_KEEP=DIR in the environment, the written checkpoints are copied there (to run
// `epmoe eval --model DIR/<family>` on them by hand).
TEST(CheckpointWriteMpi, RewritesTransformersFixtures) {
    mpi::Comm comm(MPI_COMM_WORLD);
    const std::string base = shared_dir(comm);
    const std::string models = std::string(EPMOE_FIXTURES) + "/models/";
    for (const char* name : {"mixtral", "olmoe", "qwen2_moe", "qwen3_moe"}) {
        SCOPED_TRACE(name);
        Checkpoint hf = Checkpoint::open(models + name, ModelConfig{});
        hf.require_decoder();
        const int last = hf.info().shape.num_layers - 1;
        const Model mine = hf.load(0, last, [&](int e) { return e % comm.size() == comm.rank(); });
        CheckpointWriteOptions options;
        options.max_position_embeddings = 64;
        write_checkpoint(comm, base + "/" + name, hf.info().family, mine, hf.load_decoder(0, last), options);
        Checkpoint back = Checkpoint::open(base + "/" + name, ModelConfig{});
        back.require_decoder();
        expect_same_shape(back.info().shape, hf.info().shape);
        auto all = [](int) { return true; };
        expect_same(back.load(0, last, all), back.load_decoder(0, last), hf.load(0, last, all),
                    hf.load_decoder(0, last));
        const Json want = Json::parse(std::ifstream(models + name + "/config.json"));
        const Json got = Json::parse(std::ifstream(base + "/" + name + "/config.json"));
        // Qwen's intermediate_size sizes dense layers only: with none, the model does not know transformers' value.
        const bool unused_dense_size = arch_of(hf.info().family).sparse_step && hf.info().dense_d_ff == 0;
        for (const auto& [key, value] : got.items())
            if (want.contains(key) && !want[key].is_null() && key != "sliding_window" &&
                !(key == "intermediate_size" && unused_dense_size))
                EXPECT_EQ(value, want[key]) << "config.json key " << key;
        for (const char* key : {"model_type", "architectures", "num_experts_per_tok", "rms_norm_eps", "vocab_size"})
            EXPECT_TRUE(got.contains(key)) << key;
        mpi::barrier(comm);
    }
    const char* keep = std::getenv("EPMOE_CHECKPOINT_WRITE_KEEP");
    if (comm.rank() == 0 && keep != nullptr) fs::copy(base, keep, fs::copy_options::recursive);
    if (comm.rank() == 0) fs::remove_all(base);
}

}  // namespace
}  // namespace epmoe
