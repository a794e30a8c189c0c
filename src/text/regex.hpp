// A compiled PCRE2 pattern in UTF mode with Unicode properties (\p{L}, \p{N}), JIT where available: the
// regexes of tokenizer.json's Split and ByteLevel pre-tokenizers and its Replace normalizers.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace epmoe {

class Regex {
public:
    // Compiles pattern; fails with an Error that starts with where (e.g. "tokenizer.json: pre_tokenizer.pattern").
    Regex(const std::string& pattern, const std::string& where);
    ~Regex();
    Regex(const Regex&) = delete;
    Regex& operator=(const Regex&) = delete;

    // [begin, end) byte offsets of every non-overlapping match in text (valid UTF-8), left to right; an empty
    // match advances by one character.
    std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace epmoe
