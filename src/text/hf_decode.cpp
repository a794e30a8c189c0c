// tokenizer.json's decoders, each as the tokenizers crate's decode_chain (decoders/): a list of token strings
// in, a list out; the tokenizer joins the result.
#include <unordered_map>

#include "epmoe/text/utf8.hpp"
#include "hf_parts.hpp"

namespace epmoe::hf {
namespace {

// ByteLevel: every token's characters back to bytes (a token with a character outside the map keeps its own
// UTF-8), all tokens as one string, invalid UTF-8 replaced as from_utf8_lossy does.
void byte_level_decode(std::vector<std::string>& tokens) {
    static const std::unordered_map<int32_t, unsigned char> to_byte = [] {
        std::unordered_map<int32_t, unsigned char> m;
        const std::vector<std::string>& chars = byte_level_chars();
        for (int b = 0; b < 256; ++b) {
            size_t len = 0;
            m[utf8_decode(chars[static_cast<size_t>(b)], 0, &len)] = static_cast<unsigned char>(b);
        }
        return m;
    }();
    std::string bytes;
    for (const std::string& t : tokens) {
        std::string mine;
        bool mapped = true;
        for (size_t i = 0; i < t.size() && mapped;) {
            size_t len = 0;
            auto it = to_byte.find(utf8_decode(t, i, &len));
            if (it == to_byte.end())
                mapped = false;
            else
                mine.push_back(static_cast<char>(it->second));
            i += len;
        }
        bytes += mapped ? mine : t;
    }
    tokens.assign(1, repair_utf8(bytes));
}

// ByteFallback: runs of <0xXX> tokens become their bytes when those are valid UTF-8, else one U+FFFD per byte.
void byte_fallback_decode(std::vector<std::string>& tokens) {
    std::vector<std::string> out;
    std::string pending;
    size_t pending_count = 0;
    auto flush = [&] {
        if (pending_count == 0) return;
        size_t replaced = 0;
        std::string fixed = repair_utf8(pending, &replaced);
        if (replaced == 0) {
            out.push_back(fixed);
        } else {
            for (size_t i = 0; i < pending_count; ++i) out.emplace_back("\xEF\xBF\xBD");
        }
        pending.clear();
        pending_count = 0;
    };
    for (const std::string& t : tokens) {
        unsigned value = 0;
        const bool is_byte = t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
                             std::isxdigit(static_cast<unsigned char>(t[3])) &&
                             std::isxdigit(static_cast<unsigned char>(t[4]));
        if (is_byte) {
            value = static_cast<unsigned>(std::stoul(t.substr(3, 2), nullptr, 16));
            pending.push_back(static_cast<char>(value));
            ++pending_count;
        } else {
            flush();
            out.push_back(t);
        }
    }
    flush();
    tokens.swap(out);
}

// Metaspace: the replacement becomes a space, and is dropped from the first token when a prefix was prepended.
void metaspace_decode(const Decoder& d, std::vector<std::string>& tokens) {
    for (size_t i = 0; i < tokens.size(); ++i) {
        std::string out;
        for (size_t at = 0; at < tokens[i].size();) {
            if (tokens[i].compare(at, d.text.size(), d.text) == 0) {
                if (i != 0 || !d.prepend) out.push_back(' ');
                at += d.text.size();
            } else {
                out.push_back(tokens[i][at++]);
            }
        }
        tokens[i].swap(out);
    }
}

// Strip: up to start leading and stop trailing copies of the content character off each token.
void strip_decode(const Decoder& d, std::vector<std::string>& tokens) {
    for (std::string& t : tokens) {
        size_t begin = 0, end = t.size();
        for (int k = 0; k < d.start && t.compare(begin, d.text.size(), d.text) == 0 && begin < end; ++k)
            begin += d.text.size();
        for (int k = 0;
             k < d.stop && end >= begin + d.text.size() && t.compare(end - d.text.size(), d.text.size(), d.text) == 0;
             ++k)
            end -= d.text.size();
        t = t.substr(begin, end - begin);
    }
}

void replace_decode(const Decoder& d, std::vector<std::string>& tokens) {
    for (std::string& t : tokens) {
        std::string out;
        for (size_t at = 0; at < t.size();) {
            if (!d.pattern.empty() && t.compare(at, d.pattern.size(), d.pattern) == 0) {
                out += d.text;
                at += d.pattern.size();
            } else {
                out.push_back(t[at++]);
            }
        }
        t.swap(out);
    }
}

}  // namespace

Decoder parse_decoder(const Json& j, const Where& w) {
    Decoder d;
    d.type = string_field(j, "type", w);
    if (d.type == "ByteLevel" || d.type == "ByteFallback" || d.type == "Fuse") return d;
    if (d.type == "Metaspace") {
        d.text = j.contains("replacement") ? string_field(j, "replacement", w) : string_field(j, "str_rep", w);
        if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string())
            d.prepend = j["prepend_scheme"].get<std::string>() != "never";
        else
            d.prepend = bool_field(j, "add_prefix_space", w, true);
    } else if (d.type == "Strip") {
        d.text = string_field(j, "content", w);
        for (auto [key, out] : {std::pair{"start", &d.start}, std::pair{"stop", &d.stop}}) {
            const Json& v = field(j, key, w);
            if (!v.is_number_unsigned()) w.at(key).fail("expected a count");
            *out = v.get<int>();
        }
    } else if (d.type == "Replace") {
        const Json& p = field(j, "pattern", w);
        if (!p.is_object() || !p.contains("String") || !p["String"].is_string())
            w.at("pattern").fail("expected {\"String\": ...} (a Regex pattern in a decoder is not implemented)");
        d.pattern = p["String"].get<std::string>();
        d.text = string_field(j, "content", w);
    } else if (d.type == "Sequence") {
        const Json& list = field(j, "decoders", w);
        if (!list.is_array()) w.at("decoders").fail("expected a list");
        for (size_t i = 0; i < list.size(); ++i)
            d.children.push_back(parse_decoder(list[i], w.at("decoders").index(i)));
    } else {
        w.at("type").fail(cat("decoder ", d.type,
                              " is not implemented (epmoe has ByteLevel, Metaspace, ByteFallback, "
                              "Fuse, Strip, Replace, Sequence)"));
    }
    return d;
}

void decode_chain(const Decoder& d, std::vector<std::string>& tokens) {
    if (d.type == "Sequence") {
        for (const Decoder& c : d.children) decode_chain(c, tokens);
    } else if (d.type == "ByteLevel") {
        byte_level_decode(tokens);
    } else if (d.type == "ByteFallback") {
        byte_fallback_decode(tokens);
    } else if (d.type == "Fuse") {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, all);
    } else if (d.type == "Metaspace") {
        metaspace_decode(d, tokens);
    } else if (d.type == "Strip") {
        strip_decode(d, tokens);
    } else {
        replace_decode(d, tokens);
    }
}

}  // namespace epmoe::hf
