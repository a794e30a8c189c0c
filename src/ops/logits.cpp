// What the whole-model commands do with a token's logits [vocab]: its NLL (eval), the greedy choice and
// HF's temperature + top-p sampling (generate). Declared in include/epmoe/ops/attention.hpp.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "epmoe/base/error.hpp"
#include "epmoe/ops/attention.hpp"

namespace epmoe {

double token_nll(std::span<const float> logits, int32_t target) {
    EPMOE_ASSERT(target >= 0 && static_cast<size_t>(target) < logits.size());
    // log-sum-exp with the maximum subtracted, all in double: nll = max + log(sum exp(l - max)) - l[target].
    double max = -INFINITY;
    for (const float l : logits) max = std::max(max, static_cast<double>(l));
    double sum = 0;
    for (const float l : logits) sum += std::exp(static_cast<double>(l) - max);
    return max + std::log(sum) - static_cast<double>(logits[static_cast<size_t>(target)]);
}

int32_t argmax(std::span<const float> logits) {
    if (logits.empty()) fail("argmax of no logits");
    size_t best = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
        if (std::isnan(logits[i])) fail("logit ", i, " is NaN: no token can be chosen");
        if (logits[i] > logits[best]) best = i;  // strict: the first of equal maxima wins, as torch.argmax
    }
    return static_cast<int32_t>(best);
}

int32_t sample_top_p(std::span<const float> logits, double temperature, double top_p, std::mt19937_64& rng) {
    if (!(temperature > 0)) fail("sampling temperature ", temperature, " is not > 0");
    if (!(top_p > 0 && top_p <= 1)) fail("top_p ", top_p, " is not in (0, 1]");
    if (logits.empty()) fail("sampling from no logits");
    // TemperatureLogitsWarper: scores / temperature, in float32 as HF.
    const size_t vocab = logits.size();
    std::vector<float> scaled(vocab);  // [vocab]
    for (size_t i = 0; i < vocab; ++i) {
        if (std::isnan(logits[i])) fail("logit ", i, " is NaN: no token can be sampled");
        scaled[i] = logits[i] / static_cast<float>(temperature);
    }
    // Token ids from the most probable down; ties keep id order.
    std::vector<int32_t> order(vocab);  // [vocab]
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return scaled[a] > scaled[b]; });
    const double max = scaled[static_cast<size_t>(order[0])];
    if (std::isinf(max) && max < 0) fail("every logit is -inf: no token can be sampled");
    std::vector<double> prob(vocab);  // [vocab] softmax, in `order`
    double total = 0;
    for (size_t r = 0; r < vocab; ++r) total += prob[r] = std::exp(scaled[static_cast<size_t>(order[r])] - max);
    for (double& p : prob) p /= total;
    // TopPLogitsWarper (only for top_p < 1, as generate() adds it): in ascending order, drop a token whose
    // cumulative probability is <= 1 - top_p, always keeping the most probable. Ascending rank a is `order`
    // rank vocab - 1 - a, so the kept tokens are `order`'s first `kept`.
    size_t kept = vocab;
    if (top_p < 1) {
        double cumulative = 0;
        size_t dropped = 0;
        for (size_t a = 0; a + 1 < vocab; ++a) {
            cumulative += prob[vocab - 1 - a];
            if (cumulative > 1 - top_p) break;
            dropped = a + 1;
        }
        kept = vocab - dropped;
    }
    // Multinomial draw over the kept tokens' renormalised probabilities.
    const double kept_mass = std::accumulate(prob.begin(), prob.begin() + static_cast<std::ptrdiff_t>(kept), 0.0);
    const double u = std::uniform_real_distribution<double>(0.0, kept_mass)(rng);
    double acc = 0;
    size_t last = 0;  // the least probable kept token of non-zero probability
    for (size_t r = 0; r < kept; ++r) {
        acc += prob[r];
        if (u < acc) return order[r];
        if (prob[r] > 0) last = r;
    }
    return order[last];  // u rounded onto the kept mass itself
}

}  // namespace epmoe
