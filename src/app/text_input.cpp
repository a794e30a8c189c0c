#include "app/text_input.hpp"

#include "epmoe/base/error.hpp"
#include "epmoe/base/json.hpp"
#include "epmoe/model/synthetic.hpp"

namespace epmoe {
namespace {

constexpr uint64_t kSyntheticIdsStream = 0x7e57'0000'0000ull;  // hash_uniform's stream of the synthetic ids

}  // namespace

std::unique_ptr<Tokenizer> open_tokenizer(const Config& config) {
    const std::string& t = config.text.tokenizer;
    const bool kind = t == "auto" || t == "json" || t == "sp";
    if (kind && config.model.path.empty())
        fail(
            "--text needs a tokenizer: give --model DIR (a checkpoint with tokenizer.json or tokenizer.model) or "
            "--tokenizer PATH");
    return kind ? load_tokenizer(config.model.path, t) : load_tokenizer(t);
}

std::vector<std::string> split_prompts(const std::string& bytes, const std::string& file) {
    std::vector<std::string> lines;
    for (size_t at = 0; at < bytes.size();) {
        const size_t end = std::min(bytes.find('\n', at), bytes.size());
        lines.push_back(bytes.substr(at, end - at));
        at = end + 1;
    }
    if (!file.ends_with(".jsonl")) {  // a blank line is no prompt
        std::erase_if(lines, [](const std::string& l) { return l.empty() || l == "\r"; });
        return lines;
    }
    std::vector<std::string> prompts;
    for (size_t i = 0; i < lines.size(); ++i) {
        if (lines[i].find_first_not_of(" \t\r") == std::string::npos) continue;
        const Json j = Json::parse(lines[i], nullptr, false);
        if (j.is_discarded() || !j.is_object() || !j.contains("prompt") || !j["prompt"].is_string())
            fail(file, ": line ", i + 1, ": expected a JSON object with a string \"prompt\"");
        prompts.push_back(j["prompt"].get<std::string>());
    }
    return prompts;
}

void TextInput::tokenize_text(bool prompts) {
    tokenizer_ = open_tokenizer(config_);
    const std::string& file = config_.text.text;
    const std::string bytes = read_file_bytes(file);
    if (prompts) {
        for (const std::string& p : split_prompts(bytes, file))
            text_ids_.push_back(tokenizer_->encode(p, config_.text.special_tokens));
    } else {
        text_ids_.push_back(tokenizer_->encode(bytes, config_.text.special_tokens));
    }
    shape_.num_sequences = static_cast<int64_t>(text_ids_.size());
    shape_.is_stream = !prompts;
    shape_.format = "text";
    for (size_t b = 0; b < text_ids_.size(); ++b) {
        if (text_ids_[b].empty()) fail(file, prompts ? cat(": prompt ", b + 1, " has no tokens") : ": holds no tokens");
        shape_.seq_len = std::max<int64_t>(shape_.seq_len, static_cast<int64_t>(text_ids_[b].size()));
        for (int32_t id : text_ids_[b])
            if (id >= vocab_size_)
                fail(file, ": the tokenizer ", tokenizer_->describe(), " gives id ", id,
                     ", outside the model's vocabulary of ", vocab_size_);
    }
    if (text_ids_.empty()) fail(file, ": holds no prompts");
}

TextInput::TextInput(const Config& config, int vocab_size, bool prompts) : config_(config), vocab_size_(vocab_size) {
    if (!config.text.text.empty()) {
        tokenize_text(prompts);
        return;
    }
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
    if (tokenizer_) return cat(config_.text.text, " (text, ", tokenizer_->describe(), ")");
    return config_.text.tokens.empty() ? std::string("synthetic") : cat(config_.text.tokens, " (", shape_.format, ")");
}

std::vector<int32_t> TextInput::sequence(int64_t b) const {
    if (tokenizer_) return text_ids_.at(static_cast<size_t>(b));
    return read(b * seq_len(), seq_len());
}

std::vector<int32_t> TextInput::read(int64_t first, int64_t count) const {
    if (tokenizer_) {
        EPMOE_ASSERT(is_stream() && first >= 0 && first + count <= seq_len());
        const auto begin = text_ids_[0].begin() + first;
        return std::vector<int32_t>(begin, begin + count);
    }
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
