// The tokens of the whole-model commands: text.tokens' file (io/tokens.hpp), or without one a synthetic
// [text.synthetic_sequences, text.synthetic_length] batch of ids drawn from the seed; and eval's work items
// (a window of a sequence) spread over the ranks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "epmoe/base/config.hpp"
#include "epmoe/io/tokens.hpp"

namespace epmoe {

class TextInput {
public:
    // Reads the file's header (ids are read by read()); fails naming the file. vocab_size: the model's.
    TextInput(const Config& config, int vocab_size);

    int64_t num_sequences() const { return shape_.num_sequences; }
    int64_t seq_len() const { return shape_.seq_len; }
    bool is_stream() const { return shape_.is_stream; }
    // For logs and eval.json: the file and its format, or "synthetic".
    std::string describe() const;
    // Ids [first, first + count) of the flat [B * S] ids, checked against the vocabulary.
    std::vector<int32_t> read(int64_t first, int64_t count) const;

private:
    const Config& config_;
    int vocab_size_;
    TokenShape shape_;
};

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
