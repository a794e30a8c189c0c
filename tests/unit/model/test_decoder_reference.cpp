// The whole-decoder reference (tests/reference/decoder_reference.hpp) against what Hugging Face transformers
// itself computed for the five tiny models of tests/fixtures/models (make_hf_models.py): the logits of three
// sequences of 10 tokens, their mean next-token NLL, and greedy generate() from their first 5 tokens. The
// models are read by epmoe's checkpoint loader, so a failure here is in the reference or in the loader.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

#include "../../reference/decoder_reference.hpp"
#include "../../reference/moe_reference.hpp"
#include "epmoe/io/safetensors.hpp"
#include "epmoe/model/checkpoint.hpp"

namespace epmoe::decoder_reference_test {

const std::string kModels = std::string(EPMOE_FIXTURES) + "/models/";
constexpr int kPromptLen = 5;  // make_hf_models.py's PROMPT
constexpr int kNewTokens = 6;  // and NEW

// One fixture folder: the model with every expert, its decoder, the inputs and HF's outputs.
struct HfModel {
    Model model;
    DecoderWeights decoder;
    int batch = 0, seq_len = 0, vocab = 0;
    std::vector<int32_t> input_ids;      // [batch, seq_len]
    std::vector<float> logits;           // [batch, seq_len, vocab]
    std::vector<float> nll;              // [batch]
    std::vector<int32_t> generated_ids;  // [batch, kNewTokens]

    // Row b of input_ids, or its first n tokens.
    std::vector<int32_t> sequence(int b, int n = -1) const {
        const auto* row = &input_ids[static_cast<size_t>(b) * seq_len];
        return {row, row + (n < 0 ? seq_len : n)};
    }
};

// Reads the I32 or F32 tensor `name` of file, checking its shape.
template <typename T>
std::vector<T> read_tensor(const SafetensorsFile& file, const std::string& name, const std::vector<int64_t>& shape) {
    const TensorInfo& t = file.at(name);
    EXPECT_EQ(t.shape, shape) << file.path() << ": " << name;
    std::vector<T> out(static_cast<size_t>(t.numel()));
    if constexpr (std::is_same_v<T, int32_t>)
        file.read_i32(t, out);
    else
        file.read_f32(t, out);
    return out;
}

HfModel load_hf_model(const std::string& folder) {
    const std::string dir = kModels + folder;
    Checkpoint ck = Checkpoint::open(dir, ModelConfig{});
    ck.require_decoder();
    HfModel m;
    const int layers = ck.info().shape.num_layers;
    m.model = ck.load(0, layers - 1, [](int) { return true; });
    m.decoder = ck.load_decoder(0, layers - 1);
    m.vocab = m.model.shape.decoder.vocab_size;
    const SafetensorsFile inputs = SafetensorsFile::open(dir + "/input_ids.safetensors");
    const std::vector<int64_t> shape = inputs.at("input_ids").shape;
    EXPECT_EQ(shape.size(), 2u);
    m.batch = static_cast<int>(shape.at(0));
    m.seq_len = static_cast<int>(shape.at(1));
    m.input_ids = read_tensor<int32_t>(inputs, "input_ids", shape);
    const SafetensorsFile expected = SafetensorsFile::open(dir + "/expected.safetensors");
    m.logits = read_tensor<float>(expected, "logits", {m.batch, m.seq_len, m.vocab});
    m.nll = read_tensor<float>(expected, "nll", {m.batch});
    m.generated_ids = read_tensor<int32_t>(expected, "generated_ids", {m.batch, kNewTokens});
    return m;
}

class DecoderHfFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(DecoderHfFixture, LogitsMatchHf) {
    const HfModel m = load_hf_model(GetParam());
    ASSERT_EQ(m.batch, 3);
    ASSERT_EQ(m.seq_len, 10);
    double worst = 0;
    for (int b = 0; b < m.batch; ++b) {
        const std::vector<float> logits = reference::decoder_logits(m.model, m.decoder, m.sequence(b));
        ASSERT_EQ(logits.size(), static_cast<size_t>(m.seq_len) * m.vocab);
        const float* want = &m.logits[static_cast<size_t>(b) * m.seq_len * m.vocab];
        const double rel = reference::row_rel_l2(logits.data(), want, m.seq_len * m.vocab);
        EXPECT_LT(rel, 1e-4) << GetParam() << " sequence " << b;
        worst = std::max(worst, rel);
    }
    RecordProperty("worst_rel_l2", std::to_string(worst));
    std::printf("%s: worst logits rel L2 vs HF %.3g\n", GetParam().c_str(), worst);
}

TEST_P(DecoderHfFixture, NllMatchesHf) {
    const HfModel m = load_hf_model(GetParam());
    double worst = 0;
    for (int b = 0; b < m.batch; ++b) {
        const std::vector<int32_t> ids = m.sequence(b);
        const double nll = reference::mean_nll(reference::decoder_logits(m.model, m.decoder, ids), ids, m.vocab);
        EXPECT_NEAR(nll, m.nll[b], 1e-5 * std::abs(m.nll[b])) << GetParam() << " sequence " << b;
        worst = std::max(worst, std::abs(nll - m.nll[b]) / std::abs(m.nll[b]));
    }
    std::printf("%s: worst NLL relative error vs HF %.3g\n", GetParam().c_str(), worst);
}

TEST_P(DecoderHfFixture, GreedyGenerationMatchesHf) {
    const HfModel m = load_hf_model(GetParam());
    for (int b = 0; b < m.batch; ++b) {
        const std::vector<int32_t> got =
            reference::greedy_generate(m.model, m.decoder, m.sequence(b, kPromptLen), kNewTokens);
        const std::vector<int32_t> want(m.generated_ids.begin() + static_cast<ptrdiff_t>(b) * kNewTokens,
                                        m.generated_ids.begin() + static_cast<ptrdiff_t>(b + 1) * kNewTokens);
        EXPECT_EQ(got, want) << GetParam() << " prompt " << b;
    }
}

INSTANTIATE_TEST_SUITE_P(DecoderReference, DecoderHfFixture,
                         ::testing::Values("mixtral", "mixtral_bf16_sharded", "olmoe", "qwen2_moe", "qwen3_moe"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace epmoe::decoder_reference_test
