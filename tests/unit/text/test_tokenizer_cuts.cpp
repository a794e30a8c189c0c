// Tokenizer::next_cut, the places `epmoe tokenize` cuts a text at for its ranks: at every cut of a text with
// blank lines, indentation, CJK, special tokens, CRLF, combining marks and the fixtures' own test texts, the
// two parts encoded apart (the later with no start-of-text treatment) give exactly the whole text's ids, and
// all cuts at once do too. Llama's tokenizer.json (no pre-tokenizer) has none.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "epmoe/base/json.hpp"
#include "epmoe/text/tokenizer.hpp"

namespace epmoe {
namespace {

const std::string kCutFixtures = std::string(EPMOE_FIXTURES) + "/tokenizers/";

// The fixture's test texts (hex cases too) and lines meant to sit beside cuts, joined by newlines.
std::string cut_test_text(const std::string& kind) {
    std::ifstream in(kCutFixtures + kind + "/expected.json");
    const Json expected = Json::parse(in);
    std::string text =
        "The quick brown fox\n\njumps over\n    indented line\n\tTabbed\n日本語のテキスト\n中文 文本 。\nx \ny\n"
        "x\n y\n.\n(z)\n12\n34\r\nCRLF line\r\nnext\na\n\xCC\x81 mark\n<|endoftext|>\nafter\nword<|endoftext|>\n"
        "<s>\nfoo <s> bar </s> baz\nfoo  bar   baz\n\xC2\xA8 diaeresis\ncafé naïve\n\xFF\xFE bad\nend";
    for (const Json& c : expected["cases"]) {
        text += "\n";
        if (c.contains("text")) {
            text += c["text"].get<std::string>();
        } else {
            const std::string hex = c["hex"].get<std::string>();
            for (size_t i = 0; i + 1 < hex.size(); i += 2)
                text.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
        }
    }
    return text + "\nlast line\n";
}

std::vector<TextCut> all_cuts(const Tokenizer& tok, const std::string& text) {
    std::vector<TextCut> cuts;
    for (size_t from = 0;;) {
        const auto cut = tok.next_cut(text, from);
        if (!cut) return cuts;
        EXPECT_GE(cut->end, from);
        EXPECT_GE(cut->next, cut->end);
        cuts.push_back(*cut);
        from = cut->next + 1;
    }
}

class CutFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(CutFixture, PartsEncodeAsTheWhole) {
    const auto tok = load_tokenizer(kCutFixtures + GetParam());
    const std::string text = cut_test_text(GetParam());
    const std::string_view view(text);
    const std::vector<TextCut> cuts = all_cuts(*tok, text);
    EXPECT_EQ(tok->can_cut(), GetParam() != "llama") << tok->cut_rule();
    if (!tok->can_cut()) {
        EXPECT_TRUE(cuts.empty());
        EXPECT_NE(tok->cut_rule().find("no pre-tokenizer"), std::string::npos) << tok->cut_rule();
        return;
    }
    EXPECT_GT(cuts.size(), 20u) << tok->cut_rule();
    for (bool special : {false, true}) {
        const std::vector<int32_t> whole = tok->encode(text, special);
        std::vector<int32_t> joined;  // all cuts at once
        size_t begin = 0;
        for (const TextCut& c : cuts) {
            std::vector<int32_t> two = tok->encode_part(view.substr(0, c.end), true, special, false);
            const auto after = tok->encode_part(view.substr(c.next), false, false, special);
            two.insert(two.end(), after.begin(), after.end());
            ASSERT_EQ(two, whole) << GetParam() << ": cut at byte " << c.end << " before \"" << text.substr(c.next, 12)
                                  << "\"";
            const auto part =
                tok->encode_part(view.substr(begin, c.end - begin), begin == 0, special && begin == 0, false);
            joined.insert(joined.end(), part.begin(), part.end());
            begin = c.next;
        }
        const auto last = tok->encode_part(view.substr(begin), false, false, special);
        joined.insert(joined.end(), last.begin(), last.end());
        EXPECT_EQ(joined, whole) << GetParam();
    }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, CutFixture, ::testing::Values("neox", "qwen2", "llama", "metaspace", "sp"));

}  // namespace
}  // namespace epmoe
