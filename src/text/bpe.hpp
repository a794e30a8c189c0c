// tokenizer.json's BPE model: vocab, merges with their ranks, unk_token (fuse_unk), byte_fallback,
// ignore_merges. Internal to src/text/.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "hf_parts.hpp"

namespace epmoe::hf {

class Bpe {
public:
    // From tokenizer.json's "model" object; errors name w's file and the field.
    Bpe(const Json& model, const Where& w);

    // Appends the ids of one pre-tokenized word: its characters (or their <0xXX> bytes, or unk), merged by
    // rank, lowest rank first and leftmost among equals, as tokenizers' Word::merge_all.
    void encode_word(std::string_view word, std::vector<int32_t>& out) const;

    int32_t id_of(const std::string& token) const;  // -1 when absent
    const std::string* token_of(int32_t id) const;  // nullptr when absent
    int32_t max_id() const { return static_cast<int32_t>(tokens_.size()) - 1; }

private:
    void parse_merges(const Json& merges, const Where& w);
    // The word's symbols before any merge: each character's id, else its <0xXX> bytes (byte_fallback), else
    // unk (a run of them once with fuse_unk); a character with none of these is dropped.
    std::vector<int32_t> char_ids(std::string_view word) const;

    std::unordered_map<std::string, int32_t> vocab_;
    std::vector<std::string> tokens_;                                   // [max id + 1]; "" where no token
    std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (left << 32 | right) -> (rank, id)
    std::array<int32_t, 256> byte_ids_{};                               // <0xXX>'s id, -1 if absent
    int32_t unk_ = -1;
    bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
};

}  // namespace epmoe::hf
