// Cross-entropy forward and backward (loss.hpp): each row's log-sum-exp in double, the maximum subtracted.
#include "epmoe/ops/loss.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "epmoe/base/error.hpp"
#include "fast_exp.hpp"

namespace epmoe {
namespace {

struct ExpSum {
    double max, sum;  // the row's maximum and sum exp(row - max): log-sum-exp = max + log(sum)
    double log_sum_exp() const { return max + std::log(sum); }
};

// The maximum of one row [vocab] and sum exp(row - max), in double (exp_nonpositive: std::exp, a scalar libm
// call, made the loss's passes over [2048, 8192] logits about 11 % of a training step). The exps of 256 values
// at a time go to a buffer (exps + their offset when exps is given: [vocab], kept for the gradient), then into 8
// fixed lanes (the same sums whatever vector width the clone runs): a loop that both exps and adds into lanes
// does not vectorise.
__attribute__((target_clones("avx512f", "avx2", "default"))) ExpSum loss_exp_sum(const float* __restrict row,
                                                                                 int64_t vocab, double* exps) {
    constexpr int kLanes = 8, kMaxLanes = 16, kChunk = 256;
    const int64_t max_body = vocab / kMaxLanes * kMaxLanes;
    float lane_max[kMaxLanes], max_f = row[0];  // 16 independent chains (one chain of vmaxss: 2/3 of this pass)
    std::fill(lane_max, lane_max + kMaxLanes, row[0]);
    for (int64_t j = 0; j < max_body; j += kMaxLanes)
        for (int l = 0; l < kMaxLanes; ++l) lane_max[l] = std::max(lane_max[l], row[j + l]);
    for (int64_t j = max_body; j < vocab; ++j) max_f = std::max(max_f, row[j]);
    for (int l = 0; l < kMaxLanes; ++l) max_f = std::max(max_f, lane_max[l]);
    const double max = max_f;
    double local[kChunk], lane[kLanes] = {}, sum = 0;
    for (int64_t j0 = 0; j0 < vocab; j0 += kChunk) {
        const int n = static_cast<int>(std::min<int64_t>(kChunk, vocab - j0)), body = n / kLanes * kLanes;
        double* __restrict e = exps ? exps + j0 : local;
        for (int i = 0; i < n; ++i) e[i] = fast::exp_nonpositive(static_cast<double>(row[j0 + i]) - max);
        for (int i = 0; i < body; i += kLanes)
            for (int l = 0; l < kLanes; ++l) lane[l] += e[i + l];
        for (int i = body; i < n; ++i) sum += e[i];
    }
    for (int l = 0; l < kLanes; ++l) sum += lane[l];
    return {max, sum};
}

// grad[j] = scale * exps[j] / sum (the softmax from the exps the sum was made of), rounded to FP32; grad may be
// the row the exps came from.
__attribute__((target_clones("avx512f", "avx2", "default"))) void loss_scaled_softmax(const double* __restrict exps,
                                                                                      size_t vocab, double sum,
                                                                                      double scale, float* grad) {
    const double factor = scale / sum;
    for (size_t j = 0; j < vocab; ++j) grad[j] = static_cast<float>(exps[j] * factor);
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
        result.sum += loss_exp_sum(row, static_cast<int64_t>(v), nullptr).log_sum_exp() - row[targets[t]];
        ++result.count;
    }
    return result;
}

CrossEntropySum cross_entropy_forward_backward(std::span<const float> logits, int vocab,
                                               std::span<const int32_t> targets, double scale,
                                               std::span<float> dlogits) {
    const size_t v = loss_check(logits, vocab, targets);
    EPMOE_ASSERT(dlogits.size() == logits.size());
    std::vector<double> exps(v);  // [vocab] a row's exp(logit - max), kept from the sum for its softmax
    CrossEntropySum result;
    for (size_t t = 0; t < targets.size(); ++t) {
        const float* row = &logits[t * v];
        float* grad = &dlogits[t * v];  // may be row itself: each value is read before it is written
        if (targets[t] == kIgnoreIndex) {
            std::fill(grad, grad + v, 0.0f);
            continue;
        }
        const ExpSum es = loss_exp_sum(row, static_cast<int64_t>(v), exps.data());
        const size_t target = static_cast<size_t>(targets[t]);
        result.sum += es.log_sum_exp() - row[target];  // the forward's term, from the same sum
        ++result.count;
        const double p_target = exps[target] / es.sum;
        loss_scaled_softmax(exps.data(), v, es.sum, scale, grad);
        grad[target] = static_cast<float>(scale * (p_target - 1.0));
    }
    return result;
}

}  // namespace epmoe
