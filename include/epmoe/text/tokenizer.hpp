// A checkpoint's own tokenizer: tokenizer.json (the Hugging Face tokenizers format: normalizer, pre-tokenizer,
// BPE model, added tokens, post-processor, decoder) or tokenizer.model (SentencePiece). Pure compute and files.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace epmoe {

class Tokenizer {
public:
    virtual ~Tokenizer() = default;
    // The ids of text (UTF-8; each maximal invalid byte sequence is read as one U+FFFD, as Python's
    // bytes.decode("utf-8", "replace")), with the special tokens of the post-processor or of
    // tokenizer_config.json's add_bos_token / add_eos_token when add_special.
    virtual std::vector<int32_t> encode(std::string_view text, bool add_special) const = 0;
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
