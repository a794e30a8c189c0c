// A checkpoint's own tokenizer: tokenizer.json (the Hugging Face tokenizers format: normalizer, pre-tokenizer,
// BPE model, added tokens, post-processor, decoder) or tokenizer.model (SentencePiece). Pure compute and files.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace epmoe {

// A place where a text may be cut so that its parts, encoded apart, give the whole text's ids: the part before
// ends at byte end, the part after starts at byte next (next > end where the tokenizer re-creates the bytes
// between, as SentencePiece's dummy prefix does a space).
struct TextCut {
    size_t end = 0, next = 0;
    bool operator==(const TextCut&) const = default;
};

class Tokenizer {
public:
    virtual ~Tokenizer() = default;
    // The ids of text (UTF-8; each maximal invalid byte sequence is read as one U+FFFD, as Python's
    // bytes.decode("utf-8", "replace")), with the special tokens of the post-processor or of
    // tokenizer_config.json's add_bos_token / add_eos_token when add_special.
    std::vector<int32_t> encode(std::string_view text, bool add_special) const {
        return encode_part(text, true, add_special, add_special);
    }
    // The ids of one part of a longer text cut at next_cut's places. at_start: the part starts the text (false:
    // no start-of-text treatment, e.g. no Metaspace / Prepend "▁"); add_prefix / add_suffix: the special tokens
    // before / after the text's own (the first part takes the prefix, the last the suffix).
    virtual std::vector<int32_t> encode_part(std::string_view text, bool at_start, bool add_prefix,
                                             bool add_suffix) const = 0;
    // The first cut at or after byte from of text (a window of a longer text: a cut needs the bytes on both
    // sides of it in the window) where the ids of the parts are provably the whole's; nullopt if none there.
    virtual std::optional<TextCut> next_cut(std::string_view text, size_t from) const = 0;
    // Where next_cut cuts ("a line start ...") or, when it never does, why not.
    virtual std::string cut_rule() const = 0;
    virtual bool can_cut() const = 0;
    // The text of ids (the tokenizer's decoder); special tokens left out when skip_special. An id outside the
    // tokenizer's vocabulary (a model's padded vocabulary is often larger) is left out, as HF's decode does.
    virtual std::string decode(std::span<const int32_t> ids, bool skip_special) const = 0;
    // One past the largest id (model vocabulary and added tokens).
    virtual int vocab_size() const = 0;
    // For logs and results: the file and its kind, e.g. "DIR/tokenizer.json (BPE, 800 ids)".
    virtual std::string describe() const = 0;
};

// The tokenizer at path: a directory (its tokenizer.json, else its tokenizer.model) or one of those files.
// kind: auto (as above) | json (tokenizer.json only) | sp (tokenizer.model only). tokenizer_config.json beside
// it, when present, gives add_bos_token / add_eos_token. A part of the file epmoe does not implement, or a
// malformed one, is an Error naming the file and the field.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, const std::string& kind = "auto");

// The bytes of the file at path, exactly (an Error naming it when it cannot be read).
std::string read_file_bytes(const std::string& path);

// The tokenizer.json at path with tokenizer_config.json's contents config_json ("" = none); for tests and
// fuzzing. file: the name errors give.
std::unique_ptr<Tokenizer> parse_hf_tokenizer(std::string_view json, std::string_view config_json,
                                              const std::string& file);

}  // namespace epmoe
