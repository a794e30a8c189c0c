// Which tokenizer a checkpoint directory has (tokenizer.json, else tokenizer.model), and SentencePiece's
// tokenizer.model through libsentencepiece.
#include "epmoe/text/tokenizer.hpp"

#include <sentencepiece_processor.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "epmoe/base/error.hpp"
#include "epmoe/base/json.hpp"
#include "epmoe/text/utf8.hpp"

namespace epmoe {
namespace {

namespace fs = std::filesystem;

std::string read_whole(const std::string& path) { return read_file_bytes(path); }

// tokenizer_config.json's add_bos_token / add_eos_token (SentencePiece: default true / false, as Llama's).
bool config_flag(const Json& config, const char* key, bool fallback, const std::string& file) {
    if (!config.is_object() || !config.contains(key) || config[key].is_null()) return fallback;
    if (!config[key].is_boolean()) fail(file, ": ", key, ": expected true or false");
    return config[key].get<bool>();
}

class SpTokenizer : public Tokenizer {
public:
    SpTokenizer(const std::string& file, const std::string& config_text, const std::string& config_file) : file_(file) {
        const auto status = sp_.Load(file);
        if (!status.ok()) fail(file, ": not a SentencePiece model: ", status.ToString());
        Json config;
        if (!config_text.empty()) {
            config = Json::parse(config_text, nullptr, false);
            if (config.is_discarded()) fail(config_file, ": not valid JSON");
        }
        add_bos_ = config_flag(config, "add_bos_token", true, config_file) && sp_.bos_id() >= 0;
        add_eos_ = config_flag(config, "add_eos_token", false, config_file) && sp_.eos_id() >= 0;
        plan_cuts();
    }

    // at_start is not used: a part after a cut starts after the cut's space, which the dummy prefix stands for.
    std::vector<int32_t> encode_part(std::string_view text, bool, bool add_prefix, bool add_suffix) const override {
        std::vector<int32_t> out;
        if (add_prefix && add_bos_) out.push_back(sp_.bos_id());
        // SentencePiece's BPE slows on one long sentence: encode ~4 KB pieces cut where next_cut allows.
        constexpr size_t kPiece = 4096;
        const std::string valid = repair_utf8(text);
        for (size_t begin = 0, more = 1; more;) {
            const auto cut = valid.size() - begin > 2 * kPiece ? next_cut(valid, begin + kPiece) : std::nullopt;
            const size_t end = cut ? cut->end : valid.size();
            const std::vector<int> ids = ids_of(valid.substr(begin, end - begin));
            out.insert(out.end(), ids.begin(), ids.end());
            more = cut.has_value();
            begin = cut ? cut->next : valid.size();
        }
        if (add_suffix && add_eos_) out.push_back(sp_.eos_id());
        return out;
    }

    // A space between plain characters: "X Y" is cut into "X" and "Y" (next skips the space).
    std::optional<TextCut> next_cut(std::string_view text, size_t from) const override {
        if (!cut_why_.empty()) return std::nullopt;
        for (size_t pos = from; (pos = text.find(' ', pos)) != std::string_view::npos; ++pos)
            if (pos >= 1 && plain_char_at(text, pos, false) && plain_char_at(text, pos + 1, true))
                return TextCut{pos, pos + 1};
        return std::nullopt;
    }

    std::string cut_rule() const override {
        return cut_why_.empty() ? "spaces with plain characters either side (SentencePiece's dummy prefix)" : cut_why_;
    }
    bool can_cut() const override { return cut_why_.empty(); }

    std::string decode(std::span<const int32_t> ids, bool skip_special) const override {
        std::vector<int> keep;
        for (int32_t id : ids) {
            if (id < 0 || id >= sp_.GetPieceSize()) continue;  // past the tokenizer's vocabulary: left out
            if (!(skip_special && (sp_.IsControl(id) || sp_.IsUnknown(id)))) keep.push_back(id);
        }
        std::string out;
        const auto status = sp_.Decode(keep, &out);
        if (!status.ok()) fail(file_, ": SentencePiece decode failed: ", status.ToString());
        return out;
    }

    int vocab_size() const override { return sp_.GetPieceSize(); }
    std::string describe() const override { return cat(file_, " (SentencePiece, ", vocab_size(), " ids)"); }

private:
    std::vector<int> ids_of(const std::string& text) const {
        std::vector<int> ids;
        const auto status = sp_.Encode(text, &ids);
        if (!status.ok()) fail(file_, ": SentencePiece encode failed: ", status.ToString());
        return ids;
    }

    // SentencePiece normalizes the whole text, adds its dummy prefix "▁" and turns spaces into "▁"; its BPE
    // (or unigram lattice) then never joins across a "▁" that no piece holds past its first character. So
    // "X Y" encodes as "X" then "Y" when: no piece holds "▁" inside (checked on the vocabulary), and the
    // normalizer keeps the space a word start and adds the dummy prefix (checked on probes, as 0.1.97's API
    // gives no normalizer spec). Else no cut: the text is encoded on one rank.
    void plan_cuts() {
        const std::string meta = "\xE2\x96\x81";  // U+2581
        for (int id = 0; id < sp_.GetPieceSize() && cut_why_.empty(); ++id)
            if (sp_.IdToPiece(id).find(meta, 1) != std::string::npos)
                cut_why_ = cat("piece ", sp_.IdToPiece(id), " holds \u2581 inside: pieces span words");
        const char* probes[][2] = {{"x", "y"}, {"Ab.", "(cd"}, {"12", "34"}, {"\xE6\x97\xA5", "\xE6\x9C\xAC"}};
        for (const auto& pr : probes) {
            std::vector<int> joined = ids_of(pr[0]), second = ids_of(pr[1]);
            joined.insert(joined.end(), second.begin(), second.end());
            if (cut_why_.empty() && ids_of(cat(pr[0], " ", pr[1])) != joined)
                cut_why_ = "its normalizer does not keep a space a word start with a dummy prefix";
        }
    }

    std::string file_;
    sentencepiece::SentencePieceProcessor sp_;
    bool add_bos_ = true, add_eos_ = false;
    std::string cut_why_;  // why no cut ("" = next_cut cuts at spaces)
};

}  // namespace

std::string read_file_bytes(const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) fail(path, ": is a directory, not a file");
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, ": cannot read: ", errno_text(errno));
    std::ostringstream os;
    os << in.rdbuf();
    if (in.bad()) fail(path, ": read failed");
    return os.str();
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, const std::string& kind) {
    if (kind != "auto" && kind != "json" && kind != "sp") fail("tokenizer kind ", kind, ": expected auto, json or sp");
    std::error_code ec;
    const bool dir = fs::is_directory(path, ec);
    if (!dir && !fs::exists(path, ec)) fail(path, ": no such tokenizer file or directory");
    const fs::path folder = dir ? fs::path(path) : fs::path(path).parent_path();
    const std::string json = dir ? (folder / "tokenizer.json").string() : path;
    const std::string model = dir ? (folder / "tokenizer.model").string() : path;
    bool use_sp = kind == "sp";
    if (kind == "auto") use_sp = dir ? !fs::exists(json, ec) : path.ends_with(".model");
    const std::string file = use_sp ? model : json;
    if (!fs::exists(file, ec))
        fail(dir ? path : file, kind == "auto" ? ": no tokenizer.json or tokenizer.model"
                                               : cat(": no ", use_sp ? "tokenizer.model" : "tokenizer.json"));
    const std::string config_file = (folder / "tokenizer_config.json").string();
    const std::string config = fs::exists(config_file, ec) ? read_whole(config_file) : std::string();
    if (use_sp) return std::make_unique<SpTokenizer>(file, config, config_file);
    return parse_hf_tokenizer(read_whole(file), config, file);
}

}  // namespace epmoe
