// The language-model loss: cross-entropy of the LM head's logits against next-token targets, as Hugging Face's
// ForCausalLMLoss (F.cross_entropy, ignore_index -100, reduction over the kept targets), and its backward to
// the logits. Pure compute, in double per row.
//
// The LM head before it is linear(h, W_head) without bias (attention.hpp); its backward is linear_backward
// (attention_backward.hpp) with dlogits: dh += dlogits W_head, dW_head += dlogits^T h. With
// tie_word_embeddings W_head is the embedding table, so the table's gradient receives both this and
// embed_tokens_backward's scatter-add: pass the same buffer to both (every backward adds into its outputs).
#pragma once

#include <cstdint>
#include <span>

namespace epmoe {

// A target equal to this contributes neither loss nor gradient (HF's ignore_index).
inline constexpr int32_t kIgnoreIndex = -100;

// The loss summed over the kept targets and their number; the mean is sum / count (0 / 0 when none are kept,
// NaN, as torch). Data-parallel training adds both over ranks before dividing.
struct CrossEntropySum {
    double sum = 0;     // sum over kept t of -log softmax(logits[t])[targets[t]]
    int64_t count = 0;  // targets != kIgnoreIndex
    double mean() const { return sum / static_cast<double>(count); }
};

// logits: [num_tokens, vocab]; targets: [num_tokens], each in [0, vocab) or kIgnoreIndex.
CrossEntropySum cross_entropy_forward(std::span<const float> logits, int vocab, std::span<const int32_t> targets);

// The loss of cross_entropy_forward (the same sum, bit for bit) and, from each row's one log-sum-exp, its
// gradient dlogits[t] = scale * (softmax(logits[t]) - onehot(targets[t])), 0 for an ignored target; scale is the
// loss's gradient per kept target, 1 / count for the mean (the global count under data parallelism: known from
// the targets before the logits). The one backward that writes rather than adds: logits have no other consumer,
// so dlogits may be logits itself (in place, as llm.c's fused classifier; saves a [num_tokens, vocab] buffer).
// logits, dlogits: [num_tokens, vocab].
CrossEntropySum cross_entropy_forward_backward(std::span<const float> logits, int vocab,
                                               std::span<const int32_t> targets, double scale,
                                               std::span<float> dlogits);

}  // namespace epmoe
