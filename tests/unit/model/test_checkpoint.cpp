// Checkpoint loading against the fixtures of tests/fixtures/checkpoints: families and layer kinds from
// config.json, only the used tensors read (bytes converted == the shard's bytes), --layers parsing. --input is
// tested in tests/unit/io/test_input.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "epmoe/base/error.hpp"
#include "epmoe/model/checkpoint.hpp"

namespace epmoe {
namespace {

const std::string kDir = std::string(EPMOE_FIXTURES) + "/checkpoints/";

TEST(Checkpoint, MixtralShardedReadsOnlyItsExperts) {
    Checkpoint ck = Checkpoint::open(kDir + "mixtral_sharded", ModelConfig{});
    const CheckpointInfo& info = ck.info();
    EXPECT_EQ(info.family, Family::kMixtral);
    EXPECT_EQ(info.files.size(), 2u);
    EXPECT_EQ(info.shape.num_layers, 3);
    EXPECT_EQ(info.shape.num_experts, 4);
    EXPECT_TRUE(info.shape.norm_topk_prob);
    auto owns = [](int e) { return e == 1 || e == 2; };
    std::vector<std::string> used = ck.used_tensors(0, 2, owns);
    for (const auto& name : used) {
        EXPECT_EQ(name.find("q_proj"), std::string::npos);
        EXPECT_EQ(name.find("embed_tokens"), std::string::npos);
        EXPECT_EQ(name.find("experts.0."), std::string::npos);
        EXPECT_EQ(name.find("experts.3."), std::string::npos);
    }
    // per layer: norm, gate, 2 experts x 3 matrices
    EXPECT_EQ(used.size(), 3u * (2 + 6));
    EXPECT_EQ(ck.bytes_converted(), 0u);
    Model model = ck.load(0, 2, owns);
    EXPECT_EQ(ck.bytes_converted(), ck.shard_bytes(0, 2, owns));
    EXPECT_EQ(model.weight_bytes(), ck.shard_bytes(0, 2, owns));  // F32 checkpoint: held == read
    ASSERT_EQ(model.layers.size(), 3u);
    EXPECT_EQ(model.layers[0].experts.size(), 2u);
    EXPECT_TRUE(model.layers[0].experts.count(1) && model.layers[0].experts.count(2));
    EXPECT_EQ(model.layers[2].gate.size(), 4u * 32);
}

TEST(Checkpoint, Qwen2MoeLayerKindsAndBf16Shard) {
    Checkpoint qwen = Checkpoint::open(kDir + "qwen2_moe_shared", ModelConfig{});
    ASSERT_EQ(qwen.info().layers.size(), 3u);
    EXPECT_TRUE(qwen.info().layers[0].moe && qwen.info().layers[0].shared_expert);
    EXPECT_FALSE(qwen.info().layers[1].moe);
    EXPECT_EQ(qwen.info().dense_d_ff, 56);
    EXPECT_EQ(qwen.info().shared_d_ff, 40);
    EXPECT_FALSE(qwen.info().shape.norm_topk_prob);
    Model m = qwen.load(1, 2, [](int e) { return e == 5; });
    ASSERT_EQ(m.shape.num_layers, 2);
    EXPECT_TRUE(m.layers[0].dense && m.layers[0].gate.empty() && m.layers[0].experts.empty());
    EXPECT_TRUE(m.layers[1].shared_expert && m.layers[1].shared_expert_gate.size() == 32u);

    Checkpoint olmoe = Checkpoint::open(kDir + "olmoe_bf16", ModelConfig{});
    auto owns = [](int e) { return e < 3; };
    Model o = olmoe.load(0, 1, owns);
    EXPECT_EQ(olmoe.bytes_converted(), olmoe.shard_bytes(0, 1, owns));
    EXPECT_EQ(o.weight_bytes(), 2 * olmoe.shard_bytes(0, 1, owns));  // BF16 source, F32 held
}

TEST(Checkpoint, LayerRange) {
    EXPECT_EQ(parse_layer_range("", 4), std::make_pair(0, 3));
    EXPECT_EQ(parse_layer_range("1-2", 4), std::make_pair(1, 2));
    EXPECT_EQ(parse_layer_range("3", 4), std::make_pair(3, 3));
    for (const char* bad : {"2-1", "0-4", "-1", "a-b", "1-2x", "4"})
        EXPECT_THROW(parse_layer_range(bad, 4), Error) << bad;
}

}  // namespace
}  // namespace epmoe
