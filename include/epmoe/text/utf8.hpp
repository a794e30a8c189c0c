// UTF-8 helpers of the tokenizers: repair of invalid input, Unicode normal forms (utf8proc), character classes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace epmoe {

// text with every maximal invalid subsequence replaced by U+FFFD, as Python's bytes.decode("utf-8", "replace")
// and Rust's String::from_utf8_lossy do. replaced (optional) counts the replacements.
std::string repair_utf8(std::string_view text, size_t* replaced = nullptr);

// Length in bytes of the UTF-8 character starting at s[i] (1 for a stray byte; never past s.size()).
size_t utf8_char_len(std::string_view s, size_t i);

// The code point at s[i] (valid UTF-8 assumed); len gets its length in bytes.
int32_t utf8_decode(std::string_view s, size_t i, size_t* len);

// Appends code point cp as UTF-8.
void utf8_append(std::string& out, int32_t cp);

// Unicode normal forms of valid UTF-8 (utf8proc): form is NFC, NFD, NFKC or NFKD.
std::string unicode_normalize(std::string_view text, std::string_view form);

// Rust's char::is_whitespace (Unicode White_Space).
bool is_unicode_space(int32_t cp);

// A character a text may be cut beside (epmoe tokenize over ranks): not whitespace, a control, a format
// character, a mark, a modifier symbol (NFKC may turn one into a space) or in General Punctuation U+2000-206F.
bool is_plain_char(int32_t cp);

// Whether the character of text that ends just before byte pos (after: the one that starts at pos) is plain;
// invalid UTF-8 there, or no character there, is not plain.
bool plain_char_at(std::string_view text, size_t pos, bool after);

// A word character as the regex crate's \w sees it: letters, marks, digits, connector punctuation.
bool is_word_char(int32_t cp);

}  // namespace epmoe
