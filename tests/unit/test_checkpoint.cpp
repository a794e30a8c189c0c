// Checkpoint loading against the fixtures of tests/fixtures/checkpoints: families and layer kinds from
// config.json, only the used tensors read (bytes converted == the shard's bytes), --layers and --input parsing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "epmoe/model/checkpoint.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/io/input.hpp"
#include "epmoe/io/safetensors.hpp"

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
    for (const char* bad : {"2-1", "0-4", "-1", "a-b", "1-2x", "4"}) EXPECT_THROW(parse_layer_range(bad, 4), Error) << bad;
}

TEST(Input, RowsSplitAcrossRanks) {
    const std::string path = kDir + "mixtral_sharded/input.safetensors";  // [13, 32] F32
    InputShard all = load_input(path, 32, 0, 1);
    ASSERT_EQ(all.total_rows, 13);
    int64_t next = 0;
    for (int r = 0; r < 3; ++r) {
        InputShard s = load_input(path, 32, r, 3);
        EXPECT_EQ(s.first_row, next);
        EXPECT_EQ(s.num_rows, (r + 1) * 13 / 3 - r * 13 / 3);
        EXPECT_TRUE(std::equal(s.rows.begin(), s.rows.end(), all.rows.begin() + s.first_row * 32));
        next += s.num_rows;
    }
    EXPECT_EQ(next, 13);
    EXPECT_THROW(load_input(path, 16, 0, 1), Error);
}

// [S, T, d_model]: every rank gets its rows of every step, step-major; a NaN names its step.
TEST(Input, StepSequenceSplitAcrossRanks) {
    const int64_t steps = 3, rows = 5, d = 4;
    std::vector<float> values(static_cast<size_t>(steps * rows * d));
    for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
    const std::string path = ::testing::TempDir() + "epmoe_steps.safetensors";
    write_safetensors(path, {tensor_from_f32("hidden_states", {steps, rows, d}, values)});
    for (int r = 0; r < 2; ++r) {
        InputShard s = load_input(path, d, r, 2);
        EXPECT_EQ(s.num_steps, steps);
        EXPECT_EQ(s.total_rows, rows);
        EXPECT_EQ(s.first_row, r * rows / 2);
        ASSERT_EQ(s.rows.size(), static_cast<size_t>(steps * s.num_rows * d));
        for (int64_t k = 0; k < steps; ++k)
            for (int64_t i = 0; i < s.num_rows * d; ++i)
                EXPECT_EQ(s.rows[(k * s.num_rows) * d + i], values[(k * rows + s.first_row) * d + i]);
    }
    values[(2 * rows + 4) * d + 1] = std::nanf("");
    write_safetensors(path, {tensor_from_f32("hidden_states", {steps, rows, d}, values)});
    try {
        load_input(path, d, 1, 2);
        ADD_FAILURE() << "a NaN was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("step 2 row 4 column 1"), std::string::npos) << e.what();
    }
    write_safetensors(path, {tensor_from_f32("hidden_states", {1, steps, rows, d}, values)});
    EXPECT_THROW(load_input(path, d, 0, 1), Error);
}

}  // namespace
}  // namespace epmoe
