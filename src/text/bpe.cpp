#include "bpe.hpp"

#include <cstdio>
#include <queue>

#include "epmoe/text/utf8.hpp"

namespace epmoe::hf {
namespace {

uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct Symbol {
    int32_t id;
    int prev, next;
    bool alive;
};

// A candidate merge of the symbol at pos with its next: lowest rank first, then leftmost.
struct Candidate {
    int32_t rank;
    int pos;
    int32_t id;
    bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

}  // namespace

Bpe::Bpe(const Json& model, const Where& w) {
    const std::string type = model.contains("type") ? string_field(model, "type", w) : "BPE";
    if (type != "BPE") w.at("type").fail(cat("model ", type, " is not implemented (epmoe has BPE)"));
    const Json& vocab = field(model, "vocab", w);
    if (!vocab.is_object()) w.at("vocab").fail("expected an object of token: id");
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        if (!it.value().is_number_unsigned() || it.value().get<uint64_t>() >= (1u << 30))
            w.at("vocab").at(it.key()).fail("expected an id in [0, 2^30)");
        const auto id = it.value().get<int32_t>();
        vocab_[it.key()] = id;
        if (static_cast<size_t>(id) >= tokens_.size()) tokens_.resize(static_cast<size_t>(id) + 1);
        tokens_[static_cast<size_t>(id)] = it.key();
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
        if (model.contains(key) && !model[key].is_null() && model[key] != "")
            w.at(key).fail("is not implemented (epmoe reads BPE models without one)");
    if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"] != 0.0)
        w.at("dropout").fail("is not implemented (dropout is for training)");
    if (model.contains("unk_token") && !model["unk_token"].is_null()) {
        unk_ = id_of(string_field(model, "unk_token", w));
        if (unk_ < 0) w.at("unk_token").fail("is not in the vocabulary");
    }
    fuse_unk_ = bool_field(model, "fuse_unk", w, false);
    byte_fallback_ = bool_field(model, "byte_fallback", w, false);
    ignore_merges_ = bool_field(model, "ignore_merges", w, false);
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        byte_ids_[static_cast<size_t>(b)] = id_of(name);
    }
    parse_merges(field(model, "merges", w), w.at("merges"));
}

void Bpe::parse_merges(const Json& merges, const Where& w) {
    if (!merges.is_array()) w.fail("expected a list");
    for (size_t i = 0; i < merges.size(); ++i) {
        const Json& m = merges[i];
        std::string left, right;
        if (m.is_string()) {  // "a b" (tokenizers < 0.20)
            const std::string s = m.get<std::string>();
            const size_t space = s.find(' ');
            if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
                w.index(i).fail(cat("expected \"left right\", got \"", s, "\""));
            left = s.substr(0, space);
            right = s.substr(space + 1);
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // [a, b]
            left = m[0].get<std::string>();
            right = m[1].get<std::string>();
        } else {
            w.index(i).fail("expected \"left right\" or [left, right]");
        }
        const int32_t a = id_of(left), b = id_of(right), merged = id_of(left + right);
        if (a < 0 || b < 0 || merged < 0)
            w.index(i).fail(cat("merge \"", left, "\" + \"", right, "\": a token not in the vocabulary"));
        merges_.insert_or_assign(pair_key(a, b),
                                 std::pair{static_cast<int32_t>(i), merged});  // a repeat: the last wins
    }
}

int32_t Bpe::id_of(const std::string& token) const {
    auto it = vocab_.find(token);
    return it == vocab_.end() ? -1 : it->second;
}

const std::string* Bpe::token_of(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= tokens_.size()) return nullptr;
    auto it = vocab_.find(tokens_[static_cast<size_t>(id)]);
    return it != vocab_.end() && it->second == id ? &tokens_[static_cast<size_t>(id)] : nullptr;
}

std::vector<int32_t> Bpe::char_ids(std::string_view word) const {
    std::vector<int32_t> ids;
    auto add = [&](int32_t id) { ids.push_back(id); };
    int32_t pending_unk = -1;  // tokenizers adds a run of unknown characters once (fuse_unk) when it ends
    for (size_t i = 0; i < word.size();) {
        const size_t len = utf8_char_len(word, i);
        const int32_t id = id_of(std::string(word.substr(i, len)));
        bool bytes = false;
        if (id >= 0) {
            if (pending_unk >= 0) add(pending_unk);
            pending_unk = -1;
            add(id);
        } else if (byte_fallback_) {
            bytes = true;
            for (size_t k = 0; k < len; ++k) bytes = bytes && byte_ids_[static_cast<unsigned char>(word[i + k])] >= 0;
            for (size_t k = 0; bytes && k < len; ++k) add(byte_ids_[static_cast<unsigned char>(word[i + k])]);
        }
        if (id < 0 && !bytes && unk_ >= 0) {
            if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
            pending_unk = unk_;
        }
        i += len;
    }
    if (pending_unk >= 0) add(pending_unk);
    return ids;
}

void Bpe::encode_word(std::string_view word, std::vector<int32_t>& out) const {
    if (word.empty()) return;
    if (ignore_merges_) {
        const int32_t whole = id_of(std::string(word));
        if (whole >= 0) {
            out.push_back(whole);
            return;
        }
    }
    std::vector<Symbol> symbols;
    for (int32_t id : char_ids(word))
        symbols.push_back({id, static_cast<int>(symbols.size()) - 1, static_cast<int>(symbols.size()) + 1, true});
    if (symbols.empty()) return;
    symbols.back().next = -1;
    std::priority_queue<Candidate> queue;
    auto consider = [&](int pos) {
        const int next = symbols[static_cast<size_t>(pos)].next;
        if (next < 0) return;
        auto it = merges_.find(pair_key(symbols[static_cast<size_t>(pos)].id, symbols[static_cast<size_t>(next)].id));
        if (it != merges_.end()) queue.push({it->second.first, pos, it->second.second});
    };
    for (int pos = 0; pos + 1 < static_cast<int>(symbols.size()); ++pos) consider(pos);
    while (!queue.empty()) {
        const Candidate top = queue.top();
        queue.pop();
        Symbol& left = symbols[static_cast<size_t>(top.pos)];
        if (!left.alive || left.next < 0) continue;
        Symbol& right = symbols[static_cast<size_t>(left.next)];
        auto it = merges_.find(pair_key(left.id, right.id));
        if (it == merges_.end() || it->second.second != top.id) continue;  // a stale candidate
        left.id = top.id;
        right.alive = false;
        left.next = right.next;
        if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = top.pos;
        if (left.prev >= 0) consider(left.prev);
        consider(top.pos);
    }
    for (const Symbol& s : symbols)
        if (s.alive) out.push_back(s.id);
}

}  // namespace epmoe::hf
