// tokenizer.json's components (normalizer, pre-tokenizer, decoder) as parsed structs, and the functions that
// parse and apply them. Internal to src/text/.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "epmoe/base/error.hpp"
#include "epmoe/base/json.hpp"
#include "regex.hpp"

namespace epmoe::hf {

// Where a field is, for errors: "FILE: normalizer.normalizers[1].type: ...".
struct Where {
    const std::string& file;
    std::string path;
    Where at(const std::string& key) const { return {file, path.empty() ? key : path + "." + key}; }
    Where index(size_t i) const { return {file, cat(path, "[", i, "]")}; }
    [[noreturn]] void fail(const std::string& what) const;
};

// The field key of object j (an Error naming it when absent or of another type).
const Json& field(const Json& j, const std::string& key, const Where& w);
std::string string_field(const Json& j, const std::string& key, const Where& w);
bool bool_field(const Json& j, const std::string& key, const Where& w, bool fallback);
// A Split / Replace pattern: {"String": s} (a literal) or {"Regex": r}.
std::unique_ptr<Regex> pattern_field(const Json& j, const std::string& key, const Where& w);

// A piece of text on its way to the model; first: it starts at byte 0 of the input (Metaspace's "first");
// cont: it starts a part of a text cut at a TextCut and continues the piece before (no ByteLevel prefix space).
struct Piece {
    std::string text;
    bool first = false, cont = false;
};

struct Normalizer {
    std::string type;           // NFC | NFD | NFKC | NFKD | Prepend | Replace | Sequence
    std::string text;           // Prepend: the prefix; Replace: the content
    std::unique_ptr<Regex> re;  // Replace: the pattern
    std::string pattern;        // Replace: the pattern when a {"String": s} ("" for a Regex)
    std::vector<Normalizer> children;
};
Normalizer parse_normalizer(const Json& j, const Where& w);
// at_start false: text continues a text cut at a TextCut (Prepend adds nothing).
void normalize(const Normalizer& n, std::string& text, bool at_start = true);

// GPT-2's pattern, the ByteLevel pre-tokenizer's when use_regex.
extern const char* const kGpt2Pattern;

struct PreTokenizer {
    std::string type;  // ByteLevel | Split | Metaspace | Digits | Sequence
    bool add_prefix_space = false, invert = false, split = true;
    std::unique_ptr<Regex> re;   // ByteLevel's (GPT-2's) when use_regex, Split's pattern, Digits' \p{N}
    std::string pattern;         // the regex's source: ByteLevel's, Split's {"Regex": r} ("" for a String)
    std::string behavior;        // Split: Removed | Isolated | MergedWithPrevious | MergedWithNext | Contiguous
    std::string replacement;     // Metaspace
    std::string prepend_scheme;  // Metaspace: always | first | never
    std::vector<PreTokenizer> children;
};
PreTokenizer parse_pre_tokenizer(const Json& j, const Where& w);
// Splits every piece as the pre-tokenizer does (ByteLevel also maps bytes to its printable characters).
void pre_tokenize(const PreTokenizer& p, std::vector<Piece>& pieces);

struct Decoder {
    std::string type;         // ByteLevel | Metaspace | ByteFallback | Fuse | Strip | Replace | Sequence
    std::string text;         // Metaspace: the replacement; Strip: the content; Replace: the content
    std::string pattern;      // Replace: the literal it replaces
    bool prepend = true;      // Metaspace: prepend_scheme != never
    int start = 0, stop = 0;  // Strip
    std::vector<Decoder> children;
};
Decoder parse_decoder(const Json& j, const Where& w);
// Applies the decoder chain to the tokens' strings (HF's decode_chain); the caller joins the result.
void decode_chain(const Decoder& d, std::vector<std::string>& tokens);

// Where a text may be cut for encoding its parts apart (hf_cut.cpp says why each rule is exact):
// kLineStart: after a '\n' with plain characters (is_plain_char) on both sides of it; kBeforeSpace: at a ' '
// with plain characters on both sides of it.
enum class CutRule { kNone, kLineStart, kBeforeSpace };
struct CutPlan {
    CutRule rule = CutRule::kNone;
    std::string why;  // the rule in words, or why there is none
};
// The rule that the normalizer and pre-tokenizer (either null when absent) allow.
CutPlan plan_cuts(const Normalizer* n, const PreTokenizer* p);
// Whether the bytes around pos of text meet rule's condition.
bool cut_bytes_ok(std::string_view text, size_t pos, CutRule rule);

// GPT-2's byte -> printable character map of the ByteLevel pre-tokenizer and decoder (UTF-8 of each).
const std::vector<std::string>& byte_level_chars();

}  // namespace epmoe::hf
