// tokenizer.json's normalizers and pre-tokenizers: parsed from their JSON, applied to plain strings (epmoe
// needs no offsets). Each follows the tokenizers crate (normalizers/, pre_tokenizers/) on the same input.
#include "epmoe/text/utf8.hpp"
#include "hf_parts.hpp"

namespace epmoe::hf {

const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

struct Span {
    size_t begin, end;
    bool match;
};

// The pieces of text that behavior keeps of the regex's matches (tokenizers' SplitDelimiterBehavior).
std::vector<Span> split_spans(const std::string& text, const Regex& re, const std::string& behavior, bool invert) {
    std::vector<Span> all;
    size_t prev = 0;
    for (auto [b, e] : re.find_all(text)) {
        if (b > prev) all.push_back({prev, b, invert});
        all.push_back({b, e, !invert});
        prev = e;
    }
    if (prev < text.size()) all.push_back({prev, text.size(), invert});
    if (behavior == "Isolated") return all;
    std::vector<Span> out;
    if (behavior == "Removed") {
        for (const Span& s : all)
            if (!s.match) out.push_back(s);
        return out;
    }
    if (behavior == "MergedWithNext") {
        bool previous = false;
        for (size_t i = all.size(); i-- > 0;) {
            if (all[i].match && !previous && !out.empty())
                out.back().begin = all[i].begin;
            else
                out.push_back(all[i]);
            previous = all[i].match;
        }
        return {out.rbegin(), out.rend()};
    }
    bool previous = false;  // MergedWithPrevious, Contiguous
    for (const Span& s : all) {
        const bool merge = behavior == "Contiguous" ? s.match == previous : s.match && !previous;
        if (merge && !out.empty())
            out.back().end = s.end;
        else
            out.push_back(s);
        previous = s.match;
    }
    return out;
}

void split_pieces(std::vector<Piece>& pieces, const Regex& re, const std::string& behavior, bool invert) {
    std::vector<Piece> out;
    for (const Piece& p : pieces)
        for (const Span& s : split_spans(p.text, re, behavior, invert))
            if (s.end > s.begin)  // a split's pieces are pieces of the whole text too: cont ends (hf_cut.cpp)
                out.push_back({p.text.substr(s.begin, s.end - s.begin), p.first && s.begin == 0, false});
    pieces.swap(out);
}

std::string replace_all(const std::string& text, const Regex& re, const std::string& content) {
    std::string out;
    size_t prev = 0;
    for (auto [b, e] : re.find_all(text)) {
        out.append(text, prev, b - prev);
        out.append(content);
        prev = e;
    }
    out.append(text, prev, std::string::npos);
    return out;
}

void metaspace(const PreTokenizer& p, std::vector<Piece>& pieces) {
    static const Regex space("\\Q \\E", "Metaspace");
    for (Piece& piece : pieces) {
        piece.text = replace_all(piece.text, space, p.replacement);
        const bool prepend = p.prepend_scheme == "always" || (p.prepend_scheme == "first" && piece.first);
        if (prepend && piece.text.rfind(p.replacement, 0) != 0) piece.text.insert(0, p.replacement);
    }
    if (p.split) split_pieces(pieces, *p.re, "MergedWithNext", false);
}

void byte_level(const PreTokenizer& p, std::vector<Piece>& pieces) {
    if (p.add_prefix_space)
        for (Piece& piece : pieces)
            if (!piece.cont && (piece.text.empty() || piece.text[0] != ' ')) piece.text.insert(0, " ");
    if (p.re) split_pieces(pieces, *p.re, "Isolated", false);
    const std::vector<std::string>& chars = byte_level_chars();
    for (Piece& piece : pieces) {
        std::string mapped;
        for (unsigned char b : piece.text) mapped += chars[b];
        piece.text.swap(mapped);
    }
}

}  // namespace

Normalizer parse_normalizer(const Json& j, const Where& w) {
    Normalizer n;
    n.type = string_field(j, "type", w);
    if (n.type == "NFC" || n.type == "NFD" || n.type == "NFKC" || n.type == "NFKD") return n;
    if (n.type == "Prepend") {
        n.text = string_field(j, "prepend", w);
    } else if (n.type == "Replace") {
        n.re = pattern_field(j, "pattern", w);
        if (j["pattern"].contains("String")) n.pattern = j["pattern"]["String"].get<std::string>();
        n.text = string_field(j, "content", w);
    } else if (n.type == "Sequence") {
        const Json& list = field(j, "normalizers", w);
        if (!list.is_array()) w.at("normalizers").fail("expected a list");
        for (size_t i = 0; i < list.size(); ++i)
            n.children.push_back(parse_normalizer(list[i], w.at("normalizers").index(i)));
    } else {
        w.at("type").fail(cat("normalizer ", n.type,
                              " is not implemented (epmoe has NFC, NFD, NFKC, NFKD, Prepend, "
                              "Replace, Sequence)"));
    }
    return n;
}

void normalize(const Normalizer& n, std::string& text, bool at_start) {
    if (n.type == "Sequence") {
        for (const Normalizer& c : n.children) normalize(c, text, at_start);
    } else if (n.type == "Prepend") {
        if (at_start && !text.empty()) text.insert(0, n.text);
    } else if (n.type == "Replace") {
        text = replace_all(text, *n.re, n.text);
    } else {
        text = unicode_normalize(text, n.type);
    }
}

PreTokenizer parse_pre_tokenizer(const Json& j, const Where& w) {
    PreTokenizer p;
    p.type = string_field(j, "type", w);
    if (p.type == "ByteLevel") {
        p.add_prefix_space = bool_field(j, "add_prefix_space", w, true);
        if (bool_field(j, "use_regex", w, true)) {
            p.re = std::make_unique<Regex>(kGpt2Pattern, "ByteLevel");
            p.pattern = kGpt2Pattern;
        }
    } else if (p.type == "Split") {
        p.re = pattern_field(j, "pattern", w);
        if (j["pattern"].contains("Regex")) p.pattern = j["pattern"]["Regex"].get<std::string>();
        p.behavior = string_field(j, "behavior", w);
        p.invert = bool_field(j, "invert", w, false);
        if (p.behavior != "Removed" && p.behavior != "Isolated" && p.behavior != "MergedWithPrevious" &&
            p.behavior != "MergedWithNext" && p.behavior != "Contiguous")
            w.at("behavior").fail(cat("unknown behavior ", p.behavior));
    } else if (p.type == "Metaspace") {
        p.replacement = j.contains("replacement") ? string_field(j, "replacement", w) : string_field(j, "str_rep", w);
        if (j.contains("prepend_scheme") && !j["prepend_scheme"].is_null()) {
            p.prepend_scheme = string_field(j, "prepend_scheme", w);
            if (p.prepend_scheme != "always" && p.prepend_scheme != "first" && p.prepend_scheme != "never")
                w.at("prepend_scheme").fail(cat("unknown prepend_scheme ", p.prepend_scheme));
        } else {
            p.prepend_scheme = bool_field(j, "add_prefix_space", w, true) ? "always" : "never";
        }
        p.split = bool_field(j, "split", w, true);
        p.re = std::make_unique<Regex>("\\Q" + p.replacement + "\\E", cat(w.file, ": ", w.path, ".replacement"));
    } else if (p.type == "Digits") {
        p.re = std::make_unique<Regex>(bool_field(j, "individual_digits", w, false) ? "\\p{N}" : "\\p{N}+", "Digits");
    } else if (p.type == "Sequence") {
        const Json& list = field(j, "pretokenizers", w);
        if (!list.is_array()) w.at("pretokenizers").fail("expected a list");
        for (size_t i = 0; i < list.size(); ++i)
            p.children.push_back(parse_pre_tokenizer(list[i], w.at("pretokenizers").index(i)));
    } else {
        w.at("type").fail(cat("pre-tokenizer ", p.type,
                              " is not implemented (epmoe has ByteLevel, Split, "
                              "Metaspace, Digits, Sequence)"));
    }
    return p;
}

void pre_tokenize(const PreTokenizer& p, std::vector<Piece>& pieces) {
    if (p.type == "Sequence") {
        for (const PreTokenizer& c : p.children) pre_tokenize(c, pieces);
    } else if (p.type == "ByteLevel") {
        byte_level(p, pieces);
    } else if (p.type == "Split") {
        split_pieces(pieces, *p.re, p.behavior, p.invert);
    } else if (p.type == "Metaspace") {
        metaspace(p, pieces);
    } else {  // Digits
        split_pieces(pieces, *p.re, "Isolated", false);
    }
}

}  // namespace epmoe::hf
