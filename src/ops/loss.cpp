// Cross-entropy forward and backward (loss.hpp): each row's log-sum-exp in double, the maximum subtracted.
#include "epmoe/ops/loss.hpp"

#include <algorithm>
#include <cmath>

#include "epmoe/base/error.hpp"

namespace epmoe {
namespace {

// max + log(sum exp(row - max)) of one row [vocab], in double.
double loss_log_sum_exp(const float* row, size_t vocab) {
    const double max = *std::max_element(row, row + vocab);
    double sum = 0;
    for (size_t j = 0; j < vocab; ++j) sum += std::exp(static_cast<double>(row[j]) - max);
    return max + std::log(sum);
}

// Checks the shapes shared by forward and backward; returns vocab as a size.
size_t loss_check(std::span<const float> logits, int vocab, std::span<const int32_t> targets) {
    EPMOE_ASSERT(vocab > 0 && logits.size() == targets.size() * static_cast<size_t>(vocab));
    for (const int32_t target : targets) EPMOE_ASSERT(target == kIgnoreIndex || (target >= 0 && target < vocab));
    return static_cast<size_t>(vocab);
}

}  // namespace

CrossEntropySum cross_entropy_forward(std::span<const float> logits, int vocab, std::span<const int32_t> targets) {
    const size_t v = loss_check(logits, vocab, targets);
    CrossEntropySum result;
    for (size_t t = 0; t < targets.size(); ++t) {
        if (targets[t] == kIgnoreIndex) continue;
        const float* row = &logits[t * v];
        result.sum += loss_log_sum_exp(row, v) - row[targets[t]];
        ++result.count;
    }
    return result;
}

void cross_entropy_backward(std::span<const float> logits, int vocab, std::span<const int32_t> targets, double scale,
                            std::span<float> dlogits) {
    const size_t v = loss_check(logits, vocab, targets);
    EPMOE_ASSERT(dlogits.size() == logits.size());
    for (size_t t = 0; t < targets.size(); ++t) {
        const float* row = &logits[t * v];
        float* grad = &dlogits[t * v];  // may be row itself: each value is read before it is written
        if (targets[t] == kIgnoreIndex) {
            std::fill(grad, grad + v, 0.0f);
            continue;
        }
        const double lse = loss_log_sum_exp(row, v);
        const size_t target = static_cast<size_t>(targets[t]);
        for (size_t j = 0; j < v; ++j) {
            const double p = std::exp(static_cast<double>(row[j]) - lse);
            grad[j] = static_cast<float>(scale * (j == target ? p - 1.0 : p));
        }
    }
}

}  // namespace epmoe
