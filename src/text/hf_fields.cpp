// Field access with errors that name tokenizer.json's file and field, and the ByteLevel byte map.
#include "epmoe/text/utf8.hpp"
#include "hf_parts.hpp"

namespace epmoe::hf {

void Where::fail(const std::string& what) const {
    epmoe::fail(file, ": ", path.empty() ? std::string("(top level)") : path, ": ", what);
}

const Json& field(const Json& j, const std::string& key, const Where& w) {
    if (!j.is_object()) w.fail("expected a JSON object");
    auto it = j.find(key);
    if (it == j.end()) w.at(key).fail("missing");
    return *it;
}

std::string string_field(const Json& j, const std::string& key, const Where& w) {
    const Json& v = field(j, key, w);
    if (!v.is_string()) w.at(key).fail("expected a string");
    return v.get<std::string>();
}

bool bool_field(const Json& j, const std::string& key, const Where& w, bool fallback) {
    if (!j.is_object()) w.fail("expected a JSON object");
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) w.at(key).fail("expected true or false");
    return it->get<bool>();
}

std::unique_ptr<Regex> pattern_field(const Json& j, const std::string& key, const Where& w) {
    const Json& p = field(j, key, w);
    const Where pw = w.at(key);
    if (p.is_object() && p.contains("Regex") && p["Regex"].is_string())
        return std::make_unique<Regex>(p["Regex"].get<std::string>(), cat(pw.file, ": ", pw.path, ".Regex"));
    if (p.is_object() && p.contains("String") && p["String"].is_string())
        return std::make_unique<Regex>("\\Q" + p["String"].get<std::string>() + "\\E",
                                       cat(pw.file, ": ", pw.path, ".String"));
    pw.fail("expected {\"String\": ...} or {\"Regex\": ...}");
}

const std::vector<std::string>& byte_level_chars() {
    static const std::vector<std::string> chars = [] {
        std::vector<std::string> out(256);
        int next = 256;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            utf8_append(out[static_cast<size_t>(b)], printable ? b : next++);
        }
        return out;
    }();
    return chars;
}

}  // namespace epmoe::hf
