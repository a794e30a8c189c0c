#include "app/text_input.hpp"

#include "epmoe/base/error.hpp"
#include "epmoe/model/synthetic.hpp"

namespace epmoe {
namespace {

constexpr uint64_t kSyntheticIdsStream = 0x7e57'0000'0000ull;  // hash_uniform's stream of the synthetic ids

}  // namespace

TextInput::TextInput(const Config& config, int vocab_size) : config_(config), vocab_size_(vocab_size) {
    if (config.text.tokens.empty()) {
        shape_.num_sequences = config.text.synthetic_sequences;
        shape_.seq_len = config.text.synthetic_length;
        shape_.is_stream = false;
        shape_.format = "synthetic";
        return;
    }
    shape_ = token_file_shape(config.text.tokens, vocab_size, config.text.token_dtype);
    if (shape_.num_tokens() == 0) fail(config.text.tokens, ": the token file holds no tokens");
}

std::string TextInput::describe() const {
    return config_.text.tokens.empty() ? std::string("synthetic") : cat(config_.text.tokens, " (", shape_.format, ")");
}

std::vector<int32_t> TextInput::read(int64_t first, int64_t count) const {
    if (!config_.text.tokens.empty())
        return read_tokens_range(config_.text.tokens, first, count, vocab_size_, config_.text.token_dtype);
    std::vector<int32_t> ids(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
        const float u = hash_uniform(config_.seed, kSyntheticIdsStream, static_cast<uint64_t>(first + i), 0);
        ids[static_cast<size_t>(i)] = std::min(vocab_size_ - 1, static_cast<int>(u * static_cast<float>(vocab_size_)));
    }
    return ids;
}

std::vector<EvalItem> eval_items(const TextInput& input, const TextConfig& text) {
    const int64_t stride = text.stride == 0 ? text.ctx : text.stride;
    if (input.is_stream() && input.seq_len() < text.ctx)
        fail("--ctx ", text.ctx, " is larger than the token stream ", input.describe(), " (", input.seq_len(),
             " tokens): give --ctx ", input.seq_len(), " or less");
    std::vector<EvalItem> items;
    for (int64_t b = 0; b < input.num_sequences(); ++b)
        for (const EvalWindow& w : windows(input.seq_len(), text.ctx, stride)) items.push_back({b, w});
    return items;
}

}  // namespace epmoe
