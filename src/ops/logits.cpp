// What the whole-model commands do with a token's logits [vocab]: its NLL (eval), the greedy choice and
// HF's temperature + top-p sampling (generate). Declared in include/epmoe/ops/attention.hpp.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "epmoe/base/error.hpp"
#include "epmoe/ops/attention.hpp"

namespace epmoe {
namespace {

// softmax(logits / temperature) [vocab] in double; the division in float32, as HF's TemperatureLogitsWarper.
// Fails on a NaN logit or when every logit is -inf.
std::vector<double> sampling_probs(std::span<const float> logits, double temperature) {
    const float t = static_cast<float>(temperature);
    double max = -INFINITY;
    for (size_t i = 0; i < logits.size(); ++i) {
        if (std::isnan(logits[i])) fail("logit ", i, " is NaN: no token can be sampled");
        max = std::max(max, static_cast<double>(logits[i] / t));
    }
    if (max == -INFINITY) fail("every logit is -inf: no token can be sampled");
    std::vector<double> prob(logits.size());
    double total = 0;
    for (size_t i = 0; i < logits.size(); ++i) total += prob[i] = std::exp(static_cast<double>(logits[i] / t) - max);
    for (double& p : prob) p /= total;
    return prob;
}

// HF's TopPLogitsWarper: sorted ascending, a token goes when its cumulative probability is <= 1 - top_p, the
// most probable always stays. That cumulative is 1 - (the mass of the tokens above it), so the kept tokens are
// the most probable ones while the mass above them is < top_p. Returns them, most probable first (ties: lower
// id first), sorting only as many as needed: the top 1024, then 4x more until their mass reaches top_p
// (nth_element, then a sort of those: O(vocab + k log k)).
std::vector<int32_t> top_p_tokens(const std::vector<double>& prob, double top_p) {
    std::vector<int32_t> order(prob.size());  // [vocab]
    std::iota(order.begin(), order.end(), 0);
    const auto more_probable = [&](int32_t a, int32_t b) { return prob[a] > prob[b] || (prob[a] == prob[b] && a < b); };
    for (size_t sorted = std::min<size_t>(1024, order.size());; sorted = std::min(order.size(), 4 * sorted)) {
        const auto end = order.begin() + static_cast<std::ptrdiff_t>(sorted);
        if (end != order.end()) std::nth_element(order.begin(), end, order.end(), more_probable);
        std::sort(order.begin(), end, more_probable);
        double above = 0;  // the mass of the tokens more probable than order[kept]
        for (size_t kept = 0; kept < sorted; ++kept) {
            if (kept > 0 && 1.0 - above <= 1.0 - top_p) {
                order.resize(kept);
                return order;
            }
            above += prob[static_cast<size_t>(order[kept])];
        }
        if (sorted == order.size()) return order;  // every token kept
    }
}

}  // namespace

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
    const std::vector<double> prob = sampling_probs(logits, temperature);  // [vocab]
    // The candidates: every token (generate() adds no top-p warper for top_p = 1), or HF's top-p set.
    std::vector<int32_t> candidates;
    if (top_p < 1) {
        candidates = top_p_tokens(prob, top_p);
    } else {
        candidates.resize(prob.size());
        std::iota(candidates.begin(), candidates.end(), 0);
    }
    // Multinomial draw over the candidates' renormalised probabilities.
    double mass = 0;
    for (const int32_t t : candidates) mass += prob[static_cast<size_t>(t)];
    const double u = std::uniform_real_distribution<double>(0.0, mass)(rng);
    double acc = 0;
    int32_t last = candidates.front();  // the last candidate of non-zero probability
    for (const int32_t t : candidates) {
        const double p = prob[static_cast<size_t>(t)];
        acc += p;
        if (u < acc) return t;
        if (p > 0) last = t;
    }
    return last;  // u rounded onto the mass itself
}

}  // namespace epmoe
