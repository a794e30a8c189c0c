// tokenizer.json as the tokenizers crate runs Tokenizer::encode / decode: added tokens split off first (those
// with normalized false on the raw text, then the others on the normalized text), the normalizer and the
// pre-tokenizer on what is left, the BPE model on each piece, then the post-processor's special tokens.
#include <algorithm>
#include <optional>
#include <unordered_map>

#include "bpe.hpp"
#include "epmoe/text/tokenizer.hpp"
#include "epmoe/text/utf8.hpp"
#include "hf_parts.hpp"

namespace epmoe::hf {
namespace {

struct AddedToken {
    int32_t id = 0;
    std::string content;  // as matched: normalized by the normalizer when normalized
    bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

bool is_ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// A run of text [begin, end), or an added token (id >= 0) there.
struct Segment {
    size_t begin, end;
    int32_t id;
};

// tokenizers' AddedVocabulary::find_matches: leftmost-longest matches of tokens (longest first), skipping a
// single_word token inside a word, widening an lstrip / rstrip token over the spaces beside it.
std::vector<Segment> split_added(const std::string& text, const std::vector<AddedToken>& tokens) {
    std::vector<Segment> out;
    size_t start_offset = 0;
    for (size_t i = 0; i < text.size() && !tokens.empty();) {
        const AddedToken* hit = nullptr;
        for (const AddedToken& t : tokens)
            if (text.compare(i, t.content.size(), t.content) == 0) {
                hit = &t;
                break;
            }
        if (!hit) {
            ++i;
            continue;
        }
        size_t start = i, stop = i + hit->content.size();
        i = stop;
        if (hit->single_word) {
            size_t len = 0, before = start > 0 ? start - 1 : 0;
            while (before > 0 && (static_cast<unsigned char>(text[before]) & 0xC0) == 0x80) --before;
            const bool word_before = start > 0 && is_word_char(utf8_decode(text, before, &len));
            const bool word_after = stop < text.size() && is_word_char(utf8_decode(text, stop, &len));
            if (word_before || word_after) continue;
        }
        if (hit->lstrip)  // ASCII spaces only
            while (start > start_offset && is_ascii_space(text[start - 1])) --start;
        if (hit->rstrip)
            while (stop < text.size() && is_ascii_space(text[stop])) ++stop;
        if (start > start_offset) out.push_back({start_offset, start, -1});
        out.push_back({start, stop, hit->id});
        start_offset = stop;
        i = std::max(i, stop);
    }
    if (start_offset < text.size()) out.push_back({start_offset, text.size(), -1});
    return out;
}

class HfTokenizer : public Tokenizer {
public:
    HfTokenizer(const Json& j, const Json& config, const std::string& file)
        : file_(file), model_(field(j, "model", Where{file_, ""}), Where{file_, "model"}) {
        const Where top{file_, ""};
        if (j.contains("normalizer") && !j["normalizer"].is_null())
            normalizer_ = parse_normalizer(j["normalizer"], top.at("normalizer"));
        if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null())
            pre_ = parse_pre_tokenizer(j["pre_tokenizer"], top.at("pre_tokenizer"));
        if (j.contains("decoder") && !j["decoder"].is_null()) decoder_ = parse_decoder(j["decoder"], top.at("decoder"));
        parse_added(j.contains("added_tokens") ? j["added_tokens"] : Json::array(), top.at("added_tokens"));
        if (j.contains("post_processor") && !j["post_processor"].is_null())
            parse_post(j["post_processor"], top.at("post_processor"));
        if (!config.is_null()) apply_config(config);
        plan();
    }

    std::vector<int32_t> encode_part(std::string_view raw, bool at_start, bool add_prefix,
                                     bool add_suffix) const override {
        const std::string text = repair_utf8(raw);
        std::vector<int32_t> ids;
        if (add_prefix) ids = prefix_;
        for (const Segment& s : split_added(text, raw_tokens_)) {
            if (s.id >= 0) {
                ids.push_back(s.id);
                continue;
            }
            std::string part = text.substr(s.begin, s.end - s.begin);
            if (normalizer_) normalize(*normalizer_, part, at_start || s.begin > 0);
            for (const Segment& n : split_added(part, normalized_tokens_)) {
                if (n.id >= 0) {
                    ids.push_back(n.id);
                    continue;
                }
                const bool head = s.begin == 0 && n.begin == 0;  // the first piece of this part
                std::vector<Piece> pieces{{part.substr(n.begin, n.end - n.begin), at_start && head, !at_start && head}};
                if (pre_) pre_tokenize(*pre_, pieces);
                for (const Piece& p : pieces) model_.encode_word(p.text, ids);
            }
        }
        if (add_suffix) ids.insert(ids.end(), suffix_.begin(), suffix_.end());
        return ids;
    }

    std::optional<TextCut> next_cut(std::string_view text, size_t from) const override {
        const char mark = cuts_.rule == CutRule::kLineStart ? '\n' : ' ';
        const size_t shift = cuts_.rule == CutRule::kLineStart ? 1 : 0;  // the cut is after the '\n', at the ' '
        if (cuts_.rule == CutRule::kNone) return std::nullopt;
        for (size_t i = from >= shift ? from - shift : 0; (i = text.find(mark, i)) != std::string_view::npos; ++i) {
            const size_t pos = i + shift;
            if (pos >= from && cut_bytes_ok(text, pos, cuts_.rule) && !touches_added(text, pos))
                return TextCut{pos, pos};
        }
        return std::nullopt;
    }

    std::string cut_rule() const override { return cuts_.why; }
    bool can_cut() const override { return cuts_.rule != CutRule::kNone; }

    std::string decode(std::span<const int32_t> ids, bool skip_special) const override {
        std::vector<std::string> tokens;
        for (int32_t id : ids) {
            auto it = added_.find(id);
            if (it != added_.end()) {
                if (!(skip_special && it->second.special)) tokens.push_back(it->second.text);
                continue;
            }
            const std::string* t = model_.token_of(id);
            if (t) tokens.push_back(*t);  // an id past the tokenizer's (a padded model vocabulary): left out, as HF
        }
        std::string out;
        if (decoder_) decode_chain(*decoder_, tokens);
        for (size_t i = 0; i < tokens.size(); ++i) out += (decoder_ || i == 0 ? "" : " ") + tokens[i];
        return out;
    }

    int vocab_size() const override { return max_id_ + 1; }
    std::string describe() const override { return cat(file_, " (BPE, ", vocab_size(), " ids)"); }

private:
    struct Added {
        std::string text;
        bool special;
    };

    void parse_added(const Json& list, const Where& w);
    void plan();
    bool touches_added(std::string_view text, size_t pos) const;
    void parse_post(const Json& j, const Where& w);
    void apply_config(const Json& config);
    int32_t token_id(const std::string& token, const Where& w) const;

    std::string file_;
    Bpe model_;
    std::optional<Normalizer> normalizer_;
    std::optional<PreTokenizer> pre_;
    std::optional<Decoder> decoder_;
    std::vector<AddedToken> raw_tokens_, normalized_tokens_;  // longest first
    std::unordered_map<int32_t, Added> added_;
    std::unordered_map<std::string, int32_t> added_ids_;
    std::vector<int32_t> prefix_, suffix_;  // the special tokens around the text's own
    int32_t max_id_ = 0;
    CutPlan cuts_;          // where next_cut may cut (hf_cut.cpp)
    size_t max_added_ = 0;  // the longest added token's bytes
};

void HfTokenizer::parse_added(const Json& list, const Where& w) {
    if (!list.is_array()) w.fail("expected a list");
    max_id_ = model_.max_id();
    for (size_t i = 0; i < list.size(); ++i) {
        const Where at = w.index(i);
        AddedToken t;
        const Json& id = field(list[i], "id", at);
        if (!id.is_number_unsigned() || id.get<uint64_t>() >= (1u << 30))
            at.at("id").fail("expected an id in [0, 2^30)");
        t.id = id.get<int32_t>();
        t.content = string_field(list[i], "content", at);
        t.single_word = bool_field(list[i], "single_word", at, false);
        t.lstrip = bool_field(list[i], "lstrip", at, false);
        t.rstrip = bool_field(list[i], "rstrip", at, false);
        t.special = bool_field(list[i], "special", at, false);
        t.normalized = bool_field(list[i], "normalized", at, !t.special);
        added_[t.id] = {t.content, t.special};
        added_ids_[t.content] = t.id;
        max_id_ = std::max(max_id_, t.id);
        if (t.normalized && normalizer_) normalize(*normalizer_, t.content);
        if (!t.content.empty()) (t.normalized ? normalized_tokens_ : raw_tokens_).push_back(t);
    }
    for (auto* v : {&raw_tokens_, &normalized_tokens_})
        std::stable_sort(v->begin(), v->end(),
                         [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
}

// The cut rule of the normalizer and pre-tokenizer, unless an added token holds the byte the rule cuts beside.
void HfTokenizer::plan() {
    cuts_ = plan_cuts(normalizer_ ? &*normalizer_ : nullptr, pre_ ? &*pre_ : nullptr);
    for (const auto* list : {&raw_tokens_, &normalized_tokens_})
        for (const AddedToken& t : *list) {
            max_added_ = std::max(max_added_, t.content.size());
            const char c = cuts_.rule == CutRule::kLineStart ? '\n' : ' ';
            if (cuts_.rule != CutRule::kNone && t.content.find(c) != std::string::npos)
                cuts_ = {CutRule::kNone, cat("added token ", t.content, " holds the byte a cut is next to")};
        }
}

// Whether an added token ends or starts at byte pos of text: raw tokens on the bytes, normalized ones on the
// normalized text either side (a window of a few times the longest token's bytes).
bool HfTokenizer::touches_added(std::string_view text, size_t pos) const {
    auto touches = [](std::string_view before, std::string_view after, const std::vector<AddedToken>& tokens) {
        for (const AddedToken& t : tokens)
            if (before.ends_with(t.content) || after.starts_with(t.content)) return true;
        return false;
    };
    if (touches(text.substr(0, pos), text.substr(pos), raw_tokens_)) return true;
    if (normalized_tokens_.empty()) return false;
    const size_t window = 4 * max_added_ + 16;
    std::string before = repair_utf8(text.substr(pos > window ? pos - window : 0, std::min(pos, window)));
    std::string after = repair_utf8(text.substr(pos, window));
    if (normalizer_) {
        normalize(*normalizer_, before, true);
        normalize(*normalizer_, after, false);
    }
    return touches(before, after, normalized_tokens_);
}

int32_t HfTokenizer::token_id(const std::string& token, const Where& w) const {
    auto it = added_ids_.find(token);
    const int32_t id = it != added_ids_.end() ? it->second : model_.id_of(token);
    if (id < 0) w.fail(cat("token ", token, " is not in the vocabulary"));
    return id;
}

// TemplateProcessing (single), RobertaProcessing / BertProcessing (cls, sep), ByteLevel (offsets only) and
// Sequence: the ids before and after a single sequence's own.
void HfTokenizer::parse_post(const Json& j, const Where& w) {
    const std::string type = string_field(j, "type", w);
    if (type == "ByteLevel") return;
    if (type == "Sequence") {
        const Json& list = field(j, "processors", w);
        if (!list.is_array()) w.at("processors").fail("expected a list");
        for (size_t i = 0; i < list.size(); ++i) parse_post(list[i], w.at("processors").index(i));
        return;
    }
    if (type == "RobertaProcessing" || type == "BertProcessing") {
        for (const char* key : {"cls", "sep"}) {
            const Json& v = field(j, key, w);
            if (!v.is_array() || v.size() != 2 || !v[0].is_string()) w.at(key).fail("expected [token, id]");
            (key[0] == 'c' ? prefix_ : suffix_).push_back(token_id(v[0].get<std::string>(), w.at(key)));
        }
        return;
    }
    if (type != "TemplateProcessing")
        w.at("type").fail(cat("post-processor ", type,
                              " is not implemented (epmoe has TemplateProcessing, "
                              "RobertaProcessing, BertProcessing, ByteLevel, Sequence)"));
    const Json& single = field(j, "single", w);
    const Json& specials = field(j, "special_tokens", w);
    if (!single.is_array()) w.at("single").fail("expected a list");
    bool seen_a = false;
    for (size_t i = 0; i < single.size(); ++i) {
        const Where at = w.at("single").index(i);
        if (single[i].is_object() && single[i].contains("Sequence")) {
            if (seen_a) at.fail("a second sequence in a single-sequence template");
            seen_a = true;
            continue;
        }
        const std::string name = string_field(field(single[i], "SpecialToken", at), "id", at.at("SpecialToken"));
        const Json& ids = field(field(specials, name, w.at("special_tokens")), "ids", w.at("special_tokens").at(name));
        for (const Json& id : ids) {
            if (!id.is_number_unsigned()) w.at("special_tokens").at(name).at("ids").fail("expected ids");
            (seen_a ? suffix_ : prefix_).push_back(id.get<int32_t>());
        }
    }
    if (!seen_a) w.at("single").fail("no $A sequence");
}

// transformers' add_bos_token / add_eos_token: when tokenizer_config.json sets either, the special tokens are
// its bos_token and eos_token as those two say, in place of the post-processor's.
void HfTokenizer::apply_config(const Json& config) {
    if (!config.contains("add_bos_token") && !config.contains("add_eos_token")) return;
    const std::string file = file_.substr(0, file_.rfind('/') + 1) + "tokenizer_config.json";
    const Where w{file, ""};
    prefix_.clear();
    suffix_.clear();
    for (auto [flag, name, out] :
         {std::tuple{"add_bos_token", "bos_token", &prefix_}, std::tuple{"add_eos_token", "eos_token", &suffix_}}) {
        if (!bool_field(config, flag, w, false)) continue;
        const Json& t = field(config, name, w);
        const Json& content = t.is_object() ? field(t, "content", w.at(name)) : t;
        if (!content.is_string()) w.at(name).fail("expected a token");
        out->push_back(token_id(content.get<std::string>(), w.at(name)));
    }
}

}  // namespace
}  // namespace epmoe::hf

namespace epmoe {

std::unique_ptr<Tokenizer> parse_hf_tokenizer(std::string_view json, std::string_view config_json,
                                              const std::string& file) {
    auto parse = [](std::string_view text, const std::string& name) {
        Json j = Json::parse(text.begin(), text.end(), nullptr, false);
        if (j.is_discarded()) fail(name, ": not valid JSON");
        if (!j.is_object()) fail(name, ": expected a JSON object");
        return j;
    };
    const Json j = parse(json, file);
    const Json config = config_json.empty()
                            ? Json()
                            : parse(config_json, file.substr(0, file.rfind('/') + 1) + "tokenizer_config.json");
    return std::make_unique<hf::HfTokenizer>(j, config, file);
}

}  // namespace epmoe
