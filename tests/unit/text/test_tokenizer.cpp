// The tokenizers against Hugging Face's own on the fixtures of tests/fixtures/tokenizers/make_tokenizers.py:
// tokenizers 0.23 (neox, qwen2, llama, metaspace: tokenizer.json) and sentencepiece 0.2 (sp: tokenizer.model).
// Every test text's ids without and with special tokens, and decode with and without special tokens.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "epmoe/base/error.hpp"
#include "epmoe/base/json.hpp"
#include "epmoe/text/tokenizer.hpp"

namespace epmoe {
namespace {

const std::string kTokenizerFixtures = std::string(EPMOE_FIXTURES) + "/tokenizers/";

Json read_expected(const std::string& kind) {
    std::ifstream in(kTokenizerFixtures + kind + "/expected.json");
    EXPECT_TRUE(in) << kind;
    return Json::parse(in);
}

// The case's text: "text", or the bytes of "hex" (invalid UTF-8, given to HF as decode("utf-8", "replace")).
std::string case_text(const Json& c) {
    if (c.contains("text")) return c["text"].get<std::string>();
    const std::string hex = c["hex"].get<std::string>();
    std::string bytes;
    for (size_t i = 0; i + 1 < hex.size(); i += 2)
        bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return bytes;
}

class HfFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(HfFixture, IdsAndDecodeEqualHuggingFace) {
    const Json expected = read_expected(GetParam());
    const auto tok = load_tokenizer(kTokenizerFixtures + GetParam());
    EXPECT_EQ(tok->vocab_size(), expected["vocab_size"].get<int>());
    const bool sp = GetParam() == "sp";
    for (const Json& c : expected["cases"]) {
        SCOPED_TRACE(c["name"].get<std::string>());
        const std::string text = case_text(c);
        EXPECT_EQ(tok->encode(text, false), c["ids"].get<std::vector<int32_t>>());
        if (sp) {
            EXPECT_EQ(tok->decode(c["ids"].get<std::vector<int32_t>>(), false), c["decoded"].get<std::string>());
            std::vector<int32_t> with = tok->encode(text, true);
            ASSERT_FALSE(with.empty());
            EXPECT_EQ(with[0], expected["bos_id"].get<int32_t>());  // tokenizer_config.json: add_bos_token
            continue;
        }
        const auto special = c["ids_special"].get<std::vector<int32_t>>();
        EXPECT_EQ(tok->encode(text, true), special);
        EXPECT_EQ(tok->decode(special, false), c["decoded"].get<std::string>());
        EXPECT_EQ(tok->decode(special, true), c["decoded_skip"].get<std::string>());
    }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, HfFixture, ::testing::Values("neox", "qwen2", "llama", "metaspace", "sp"));

// Byte-level BPE is lossless on NFC text: decode(encode(x)) == x.
TEST(Tokenizer, ByteLevelRoundTrip) {
    for (const char* kind : {"neox", "qwen2"}) {
        const auto tok = load_tokenizer(kTokenizerFixtures + kind);
        const Json expected = read_expected(kind);  // alive through the loop (a temporary's ["cases"] is not)
        for (const Json& c : expected["cases"]) {
            if (!c.contains("text") || c["name"] == "combining") continue;
            const std::string text = c["text"].get<std::string>();
            EXPECT_EQ(tok->decode(tok->encode(text, false), false), text) << kind << " " << c["name"];
        }
    }
}

std::string read_fixture(const std::string& path) {
    std::ifstream in(kTokenizerFixtures + path);
    std::ostringstream os;
    os << in.rdbuf();
    return os.str();
}

// What parse_hf_tokenizer says of the fixture's tokenizer.json after edit (empty when it parses).
std::string error_of(const std::string& kind, const std::function<void(Json&)>& edit) {
    Json j = Json::parse(read_fixture(kind + "/tokenizer.json"));
    edit(j);
    try {
        parse_hf_tokenizer(j.dump(), "", "DIR/tokenizer.json");
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(Tokenizer, MalformedNamesFileAndField) {
    EXPECT_EQ(error_of("qwen2", [](Json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways"; }),
              "DIR/tokenizer.json: pre_tokenizer.pretokenizers[0].behavior: unknown behavior Sideways");
    EXPECT_NE(error_of("qwen2", [](Json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(["; })
                  .find("DIR/tokenizer.json: pre_tokenizer.pretokenizers[0].pattern.Regex: regex (["),
              std::string::npos);
    EXPECT_EQ(error_of("neox", [](Json& j) { j["normalizer"]["type"] = "Lowercase"; })
                  .rfind("DIR/tokenizer.json: normalizer.type: normalizer Lowercase is not implemented", 0),
              0u);
    EXPECT_EQ(error_of("neox", [](Json& j) { j["model"]["type"] = "WordPiece"; })
                  .rfind("DIR/tokenizer.json: model.type: model WordPiece is not implemented", 0),
              0u);
    EXPECT_EQ(error_of("neox", [](Json& j) { j["model"]["merges"][3] = "x"; }),
              "DIR/tokenizer.json: model.merges[3]: expected \"left right\", got \"x\"");
    EXPECT_EQ(error_of("qwen2",
                       [](Json& j) {
                           j["model"]["merges"][0] = Json::array({"zz", "q"});
                       }),
              "DIR/tokenizer.json: model.merges[0]: merge \"zz\" + \"q\": a token not in the vocabulary");
    EXPECT_EQ(error_of("llama", [](Json& j) { j["decoder"]["decoders"][3]["type"] = "CTC"; })
                  .rfind("DIR/tokenizer.json: decoder.decoders[3].type: decoder CTC is not implemented", 0),
              0u);
    EXPECT_EQ(error_of("llama", [](Json& j) { j["post_processor"]["type"] = "Lambada"; })
                  .rfind("DIR/tokenizer.json: post_processor.type: post-processor Lambada is not implemented", 0),
              0u);
    EXPECT_EQ(error_of("llama", [](Json& j) { j["model"].erase("vocab"); }),
              "DIR/tokenizer.json: model.vocab: missing");
    EXPECT_EQ(error_of("llama", [](Json& j) { j["added_tokens"][0]["id"] = -1; }),
              "DIR/tokenizer.json: added_tokens[0].id: expected an id in [0, 2^30)");
    EXPECT_THROW(parse_hf_tokenizer("{not json", "", "T.json"), Error);
    EXPECT_THROW(parse_hf_tokenizer("[]", "", "T.json"), Error);
}

TEST(Tokenizer, LoadPicksTheDirectorysFile) {
    EXPECT_NE(load_tokenizer(kTokenizerFixtures + "sp")->describe().find("SentencePiece"), std::string::npos);
    EXPECT_NE(load_tokenizer(kTokenizerFixtures + "qwen2")->describe().find("tokenizer.json"), std::string::npos);
    EXPECT_THROW(load_tokenizer(kTokenizerFixtures + "qwen2", "sp"), Error);
    EXPECT_THROW(load_tokenizer(kTokenizerFixtures + "missing"), Error);
    EXPECT_THROW(load_tokenizer(kTokenizerFixtures + "sp", "bpe"), Error);
    const auto tok = load_tokenizer(kTokenizerFixtures + "neox");
    EXPECT_EQ(tok->decode(std::vector<int32_t>{100000}, false), "");  // past the vocabulary: left out, as HF
}

}  // namespace
}  // namespace epmoe
