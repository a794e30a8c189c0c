// The tokens of the whole-model commands: text.tokens' file (io/tokens.hpp); text.text's UTF-8 file through
// the checkpoint's tokenizer (text/tokenizer.hpp: eval reads it as one stream, generate as prompts, one per
// line or a JSONL of {"prompt": ...}); or without either a synthetic [text.synthetic_sequences,
// text.synthetic_length] batch of ids drawn from the seed. Also eval's work items (a window of a sequence)
// spread over the ranks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "epmoe/base/config.hpp"
#include "epmoe/io/tokens.hpp"
#include "epmoe/text/tokenizer.hpp"

namespace epmoe {

class TextInput {
public:
    // Reads the file's header (ids are read by read()), or tokenizes text.text whole (prompts: one sequence
    // per prompt); fails naming the file. vocab_size: the model's.
    TextInput(const Config& config, int vocab_size, bool prompts = false);

    int64_t num_sequences() const { return shape_.num_sequences; }
    // The tokens of each sequence; prompts of --text: the longest prompt's.
    int64_t seq_len() const { return shape_.seq_len; }
    bool is_stream() const { return shape_.is_stream; }
    // For logs and eval.json: the file and its format, or "synthetic".
    std::string describe() const;
    // Ids [first, first + count) of the flat [B * S] ids, checked against the vocabulary (not for --text prompts).
    std::vector<int32_t> read(int64_t first, int64_t count) const;
    // The ids of sequence b (a --text prompt has its own length).
    std::vector<int32_t> sequence(int64_t b) const;
    // The tokenizer of --text (nullptr for token files and synthetic ids): generate decodes with it.
    const Tokenizer* tokenizer() const { return tokenizer_.get(); }

private:
    void tokenize_text(bool prompts);

    const Config& config_;
    int vocab_size_;
    TokenShape shape_;
    std::unique_ptr<Tokenizer> tokenizer_;
    std::vector<std::vector<int32_t>> text_ids_;  // --text: [1, N] stream or one row per prompt
};

// The tokenizer text.tokenizer names: auto | json | sp (the model directory's), or a path (directory or file).
std::unique_ptr<Tokenizer> open_tokenizer(const Config& config);

// The prompts of a --text file: one per line (a final newline ends the last), or each JSONL line's "prompt"
// when the file ends in .jsonl. file: for errors.
std::vector<std::string> split_prompts(const std::string& bytes, const std::string& file);

// One window of one sequence: what a rank runs and scores (EvalWindow's fields within sequence `sequence`).
struct EvalItem {
    int64_t sequence = 0;
    EvalWindow window;
};

// Every eval item of the input in order (sequence, then window), as windows() cuts each sequence with
// text.ctx and text.stride (0 = ctx). A stream shorter than ctx is an error naming --ctx and the file; each
// sequence of a [B, S] input shorter than ctx is one window (HF's loss over it).
std::vector<EvalItem> eval_items(const TextInput& input, const TextConfig& text);

}  // namespace epmoe
