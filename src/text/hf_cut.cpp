// Where a text may be cut so that tokenizer.json's pipeline, run on the parts apart (the later parts with no
// start-of-text treatment), gives the ids of the whole text: `epmoe tokenize` over ranks. A cut is exact when
// every step maps the whole text to the concatenation of what it maps the parts to, and the BPE model sees the
// same pieces. The argument, step by step, for the two rules (X and Y: the plain characters beside the cut,
// is_plain_char: not whitespace, control, format, mark, modifier symbol or General Punctuation):
//
// kLineStart, "X\n|Y":
//  - Added tokens: none holds '\n' (else no rule), so no match spans the cut; a cut where a token ends or
//    starts is refused (HfTokenizer::touches_added), so no lstrip / rstrip widening or segment start moves.
//  - NFC / NFD: '\n' is a starter that composes with nothing, so no composition or reordering crosses it.
//    Prepend adds its prefix only to the text's start (normalize with at_start false for later parts).
//    Replace with a String pattern that holds no '\n' and a content with no whitespace: no match spans the
//    '\n', and X, Y stay non-space.
//  - The first pre-tokenizer splits with GPT-2's pattern (ByteLevel) or Qwen2's / Llama 3's (Split,
//    Isolated). In each, every character is matched by some alternative (no gaps), no alternative looks
//    behind, and the only alternatives that match '\n' match whitespace runs or end in [\r\n]*, so they cannot
//    run on into Y; X being no space, the run there is the '\n' alone, matched the same with Y after it (the
//    whole) or with nothing (the first part: \s+(?!\S) and \s+ give the same "\n"). So a piece ends at the cut
//    and matching from Y is matching a fresh text. ByteLevel's add_prefix_space adds no space to a later part
//    (Piece::cont); later pre-tokenizers of a Sequence act on each piece alone, and the cut is a piece boundary.
// kBeforeSpace, "X| Y" (Metaspace with split first):
//  - Metaspace turns ' ' into its replacement and splits before each (MergedWithNext), so a piece starts at the
//    space in the whole and in the later part alike; the later part's first piece already starts with the
//    replacement, so prepend_scheme always adds nothing, and first adds only at the text's start.
//  - Added tokens: none holds ' ', none ends or starts at the cut; NFC / NFD do not compose across a space.
// Anything else (no pre-tokenizer: Llama's BPE over the whole text as one word; a Split pattern not analysed
// here; NFKC; a Replace by a regex) has no cut, and epmoe tokenize runs the text on one rank.
#include <string_view>

#include "epmoe/text/utf8.hpp"
#include "hf_parts.hpp"

namespace epmoe::hf {
namespace {

// Split patterns analysed above: Qwen2's and Llama 3's (GPT-2's is ByteLevel's, also seen in Split).
constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

bool has_space(const std::string& s) {
    for (char c : s)
        if (c == ' ' || (c >= '\t' && c <= '\r')) return true;
    return false;
}

// Why normalizer n keeps no cut exact ("" = it keeps both rules').
std::string normalizer_blocks(const Normalizer& n) {
    if (n.type == "Sequence") {
        for (const Normalizer& c : n.children)
            if (std::string why = normalizer_blocks(c); !why.empty()) return why;
        return "";
    }
    if (n.type == "NFC" || n.type == "NFD" || n.type == "Prepend") return "";
    if (n.type == "Replace" && !n.pattern.empty() && n.pattern.find_first_of("\n ") == std::string::npos &&
        !has_space(n.text))
        return "";
    if (n.type == "Replace") return "normalizer Replace by a regex, or of a space or newline";
    return cat("normalizer ", n.type, " (it may turn a character into a space)");
}

}  // namespace

CutPlan plan_cuts(const Normalizer* n, const PreTokenizer* p) {
    if (!p) return {CutRule::kNone, "no pre-tokenizer: the BPE model runs over the whole text as one word"};
    if (n)
        if (std::string why = normalizer_blocks(*n); !why.empty()) return {CutRule::kNone, why};
    const PreTokenizer& first = p->type == "Sequence" && !p->children.empty() ? p->children[0] : *p;
    if (first.type == "ByteLevel" && first.pattern == kGpt2Pattern)
        return {CutRule::kLineStart, "line starts with plain characters either side of the newline (ByteLevel)"};
    if (first.type == "Split" && first.behavior == "Isolated" && !first.invert &&
        (first.pattern == kGpt2Pattern || first.pattern == kQwen2Pattern || first.pattern == kLlama3Pattern))
        return {CutRule::kLineStart, "line starts with plain characters either side of the newline (Split)"};
    if (first.type == "Metaspace" && first.split)
        return {CutRule::kBeforeSpace, "spaces with plain characters either side (Metaspace)"};
    if (first.type == "Split") return {CutRule::kNone, "a Split pattern whose pieces epmoe has not analysed for cuts"};
    return {CutRule::kNone, cat("pre-tokenizer ", first.type, " first: its pieces may span lines")};
}

bool cut_bytes_ok(std::string_view text, size_t pos, CutRule rule) {
    if (rule == CutRule::kLineStart)
        return pos >= 2 && pos < text.size() && text[pos - 1] == '\n' && plain_char_at(text, pos - 1, false) &&
               plain_char_at(text, pos, true);
    if (rule == CutRule::kBeforeSpace)
        return pos >= 1 && pos + 1 < text.size() && text[pos] == ' ' && plain_char_at(text, pos, false) &&
               plain_char_at(text, pos + 1, true);
    return false;
}

}  // namespace epmoe::hf
