// Checkpoints as transformers 5 writes them (tests/fixtures/checkpoints/*_v5*, made by make_hf_v5.py):
// config.json's v5 keys (num_local_experts for Qwen3-MoE, rope_parameters, head_dim: null, layer_types, dtype),
// the fused experts layout read slice by slice (each rank only its own experts' rows), and the errors for a
// layer holding both layouts or half a fused pair.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "epmoe/base/error.hpp"
#include "epmoe/io/safetensors.hpp"
#include "epmoe/model/checkpoint.hpp"

namespace epmoe {
namespace {

namespace fs = std::filesystem;
const std::string kV5Fixtures = std::string(EPMOE_FIXTURES) + "/checkpoints/";

// A fresh copy of fixture `name` in a scratch folder; returns its path.
std::string v5_copy(const std::string& name, const std::string& as) {
    const fs::path dir = fs::path(::testing::TempDir()) / ("epmoe_v5_" + as);
    fs::remove_all(dir);
    fs::copy(kV5Fixtures + name, dir);
    return dir.string();
}

Json v5_read_json(const std::string& path) { return Json::parse(std::ifstream(path)); }
void v5_write_json(const std::string& path, const Json& j) { std::ofstream(path) << j.dump(2); }

// Rewrites dir/model.safetensors: drops the tensors named in `drop`, then adds `add` (name -> copy of `from`).
void v5_edit_tensors(const std::string& dir, const std::vector<std::string>& drop,
                     const std::vector<std::pair<std::string, std::string>>& add = {}) {
    const std::string path = dir + "/model.safetensors";
    std::vector<TensorToWrite> out;
    {
        SafetensorsFile file = SafetensorsFile::open(path);
        auto copy = [&](const std::string& name, const TensorInfo& t) {
            auto raw = file.raw(t);
            out.push_back({name, t.dtype, t.shape, std::vector<std::byte>(raw.begin(), raw.end())});
        };
        for (const TensorInfo& t : file.tensors())
            if (std::find(drop.begin(), drop.end(), t.name) == drop.end()) copy(t.name, t);
        for (const auto& [name, from] : add) copy(name, file.at(from));
    }
    write_safetensors(path, out);
}

// The message of the Error that opening `dir` throws ("" if it opens).
std::string v5_open_error(const std::string& dir) {
    try {
        Checkpoint::open(dir, ModelConfig{});
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// A kernel that keeps the FP32 weights as read, so tests can compare them.
class V5KeepKernel : public MlpKernel {
public:
    std::string name() const override { return "test/keep"; }
    std::string implementation() const override { return "none"; }
    void prepare(ExpertWeights&, int, int) const override {}
    void forward(const ExpertWeights&, int, int, std::span<const float>, std::span<float>,
                 std::vector<float>&) const override {}
};

TEST(CheckpointV5, Qwen3ConfigNamesTheExpertCountNumLocalExperts) {
    Checkpoint ck = Checkpoint::open(kV5Fixtures + "qwen3_moe_v5", ModelConfig{});
    const CheckpointInfo& info = ck.info();
    EXPECT_EQ(info.family, Family::kQwen3Moe);
    EXPECT_EQ(info.shape.num_experts, 4);  // config.json has num_local_experts only
    EXPECT_EQ(info.shape.d_ff, 48);
    EXPECT_TRUE(info.shape.norm_topk_prob);
    ASSERT_EQ(info.layers.size(), 2u);
    EXPECT_FALSE(info.layers[0].fused_experts);
    EXPECT_EQ(info.mlp_prefix(1), "model.layers.1.mlp.");
}

TEST(CheckpointV5, ExpertCountKeysMustAgree) {
    const std::string dir = v5_copy("qwen3_moe_v5", "keys"), config = dir + "/config.json";
    Json j = v5_read_json(config);
    j["num_experts"] = 4;  // both keys, the same count: fine
    v5_write_json(config, j);
    EXPECT_EQ(v5_open_error(dir), "");
    j["num_experts"] = 8;
    v5_write_json(config, j);
    const std::string both = v5_open_error(dir);
    EXPECT_NE(both.find(config), std::string::npos) << both;
    EXPECT_NE(both.find("'num_experts' = 8"), std::string::npos) << both;
    EXPECT_NE(both.find("'num_local_experts' = 4"), std::string::npos) << both;
    j.erase("num_experts");
    j.erase("num_local_experts");
    v5_write_json(config, j);
    const std::string none = v5_open_error(dir);
    EXPECT_NE(none.find("missing key 'num_experts' (or 'num_local_experts')"), std::string::npos) << none;
}

// The keys v5 adds or renames change nothing `epmoe run` computes: a v4-style config gives the same info.
TEST(CheckpointV5, V4AndV5ConfigKeysGiveTheSameModel) {
    const std::string dir = v5_copy("mixtral_v5_fused", "v4keys"), config = dir + "/config.json";
    const CheckpointInfo v5 = Checkpoint::open(dir, ModelConfig{}).info();
    Json j = v5_read_json(config);
    ASSERT_TRUE(j.contains("rope_parameters") && j["head_dim"].is_null() && j.contains("dtype"));
    j["rope_theta"] = j["rope_parameters"]["rope_theta"];
    j["torch_dtype"] = j["dtype"];
    for (const char* v5_key : {"rope_parameters", "head_dim", "dtype", "transformers_version"}) j.erase(v5_key);
    v5_write_json(config, j);
    const CheckpointInfo v4 = Checkpoint::open(dir, ModelConfig{}).info();
    j["head_dim"] = 8;
    j["layer_types"] = Json::array({"full_attention", "sliding_attention"});
    v5_write_json(config, j);
    const CheckpointInfo other = Checkpoint::open(dir, ModelConfig{}).info();
    for (const CheckpointInfo* info : {&v4, &other}) {
        EXPECT_EQ(info->family, v5.family);
        EXPECT_EQ(info->shape.d_model, v5.shape.d_model);
        EXPECT_EQ(info->shape.d_ff, v5.shape.d_ff);
        EXPECT_EQ(info->shape.num_experts, v5.shape.num_experts);
        EXPECT_EQ(info->shape.top_k, v5.shape.top_k);
        EXPECT_EQ(info->shape.norm_topk_prob, v5.shape.norm_topk_prob);
        EXPECT_EQ(info->shape.rms_norm_eps, v5.shape.rms_norm_eps);
    }
}

// Mixtral's v5 runtime layout moves the block from block_sparse_moe to mlp and fuses the experts.
TEST(CheckpointV5, MixtralFusedListsEachFusedTensorOnce) {
    Checkpoint ck = Checkpoint::open(kV5Fixtures + "mixtral_v5_fused", ModelConfig{});
    EXPECT_EQ(ck.info().family, Family::kMixtral);
    EXPECT_TRUE(ck.info().shape.norm_topk_prob);
    EXPECT_TRUE(ck.info().layers[1].fused_experts);
    EXPECT_EQ(
        ck.used_tensors(1, 1, [](int e) { return e >= 2; }),
        (std::vector<std::string>{"model.layers.1.post_attention_layernorm.weight", "model.layers.1.mlp.gate.weight",
                                  "model.layers.1.mlp.experts.gate_up_proj", "model.layers.1.mlp.experts.down_proj"}));
}

// A rank reads only its own experts' rows of a fused tensor: the bytes, and the weights, of the per-expert save
// of the same model.
TEST(CheckpointV5, FusedReadsOnlyTheOwnedExpertsRows) {
    Checkpoint fused = Checkpoint::open(kV5Fixtures + "qwen3_moe_v5_fused", ModelConfig{});
    Checkpoint split = Checkpoint::open(kV5Fixtures + "qwen3_moe_v5", ModelConfig{});
    auto keep = std::make_shared<V5KeepKernel>();
    auto owns = [](int e) { return e == 1 || e == 3; };
    Model a = fused.load(0, 1, owns, keep), b = split.load(0, 1, owns, keep);
    EXPECT_EQ(fused.bytes_converted(), fused.shard_bytes(0, 1, owns));
    EXPECT_EQ(fused.shard_bytes(0, 1, owns), split.shard_bytes(0, 1, owns));
    EXPECT_EQ(fused.shard_floats(0, 1, owns), split.shard_floats(0, 1, owns));
    EXPECT_LT(fused.shard_bytes(0, 1, owns), fused.shard_bytes(0, 1, [](int) { return true; }));
    for (int l = 0; l < 2; ++l) {
        ASSERT_EQ(a.layers[l].experts.size(), 2u);
        for (int e : {1, 3}) {
            EXPECT_EQ(a.layers[l].experts.at(e).w13, b.layers[l].experts.at(e).w13) << "layer " << l << " expert " << e;
            EXPECT_EQ(a.layers[l].experts.at(e).w2, b.layers[l].experts.at(e).w2) << "layer " << l << " expert " << e;
        }
        EXPECT_EQ(a.layers[l].gate, b.layers[l].gate);
    }
    EXPECT_EQ(a.weight_bytes(), 4 * fused.shard_floats(0, 1, owns));
}

TEST(CheckpointV5, BothLayoutsInOneLayerIsAnError) {
    const std::string dir = v5_copy("qwen3_moe_v5_fused", "both");
    v5_edit_tensors(dir, {}, {{"model.layers.1.mlp.experts.2.up_proj.weight", "model.layers.1.mlp.gate.weight"}});
    const std::string what = v5_open_error(dir);
    EXPECT_NE(what.find(dir + "/model.safetensors: layer 1 holds both fused experts (model.layers.1.mlp.experts."
                              "gate_up_proj) and per-expert tensors (model.layers.1.mlp.experts.2.up_proj.weight)"),
              std::string::npos)
        << what;
}

TEST(CheckpointV5, HalfAFusedPairIsAnError) {
    const std::string dir = v5_copy("qwen3_moe_v5_fused", "half");
    v5_edit_tensors(dir, {"model.layers.0.mlp.experts.down_proj"});
    const std::string what = v5_open_error(dir);
    EXPECT_NE(what.find(dir + "/model.safetensors: tensor model.layers.0.mlp.experts.gate_up_proj has no "
                              "model.layers.0.mlp.experts.down_proj beside it"),
              std::string::npos)
        << what;
    v5_copy("qwen3_moe_v5_fused", "half");
    v5_edit_tensors(dir, {"model.layers.1.mlp.experts.gate_up_proj"});
    EXPECT_NE(v5_open_error(dir).find("tensor model.layers.1.mlp.experts.down_proj has no "
                                      "model.layers.1.mlp.experts.gate_up_proj beside it"),
              std::string::npos);
}

TEST(CheckpointV5, MixtralRouterUnderBothModulesIsAnError) {
    const std::string dir = v5_copy("mixtral_v5_fused", "two_routers");
    v5_edit_tensors(dir, {}, {{"model.layers.0.block_sparse_moe.gate.weight", "model.layers.0.mlp.gate.weight"}});
    const std::string what = v5_open_error(dir);
    EXPECT_NE(what.find("tensors model.layers.0.block_sparse_moe.gate.weight and model.layers.0.mlp.gate.weight "
                        "are both present"),
              std::string::npos)
        << what;
}

// A fused shape that disagrees with config.json names the tensor and both shapes.
TEST(CheckpointV5, FusedShapeIsChecked) {
    const std::string dir = v5_copy("olmoe_v5_fused", "shape"), config = dir + "/config.json";
    Json j = v5_read_json(config);
    j["intermediate_size"] = 40;
    v5_write_json(config, j);
    const std::string what = v5_open_error(dir);
    EXPECT_NE(what.find("tensor model.layers.0.mlp.experts.gate_up_proj has shape [4, 96, 32], expected [4, 80, 32]"),
              std::string::npos)
        << what;
}

// One fused .safetensors file with no config.json: sizes from the model.* keys, layout from the names.
TEST(CheckpointV5, LoneFusedFileWithModelKeys) {
    const fs::path dir = fs::path(::testing::TempDir()) / "epmoe_v5_lone";
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::copy(kV5Fixtures + "qwen2_moe_v5_fused/model.safetensors", dir / "lone.safetensors");
    ModelConfig m;
    m.d_model = 32;
    m.d_ff = 48;
    m.num_experts = 4;
    m.top_k = 2;
    Checkpoint ck = Checkpoint::open((dir / "lone.safetensors").string(), m);
    ASSERT_EQ(ck.info().layers.size(), 2u);
    EXPECT_TRUE(ck.info().layers[0].fused_experts && ck.info().layers[1].fused_experts);
    auto owns = [](int e) { return e == 0; };
    Model model = ck.load(0, 1, owns);
    EXPECT_EQ(ck.bytes_converted(), ck.shard_bytes(0, 1, owns));
    EXPECT_EQ(model.layers[1].experts.count(0), 1u);
}

}  // namespace
}  // namespace epmoe
