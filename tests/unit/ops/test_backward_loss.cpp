// The backward of the cross-entropy loss (ops/loss.hpp: cross_entropy_forward_backward), with ignored targets, in
// place, and through an LM head tied to the embeddings (one table receiving both gradients), against central finite
// differences.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backward_check.hpp"
#include "epmoe/ops/attention.hpp"
#include "epmoe/ops/attention_backward.hpp"
#include "epmoe/ops/loss.hpp"

namespace epmoe {
namespace {

using bwdtest::check_grad;
using bwdtest::random_vec;
using bwdtest::to_double;

TEST(CrossEntropyBackward, MatchesFiniteDifferencesWithIgnoredTargets) {
    const int vocab = 7;
    const std::vector<int32_t> targets = {3, kIgnoreIndex, 0, 6, kIgnoreIndex};
    const int n = static_cast<int>(targets.size());
    std::vector<float> logits = random_vec(n * vocab, 41, 3.0f);
    const CrossEntropySum ce = cross_entropy_forward(logits, vocab, targets);
    EXPECT_EQ(ce.count, 3);
    const double ref = bwdtest::ref_cross_entropy(to_double(logits), vocab, targets);
    EXPECT_NEAR(ce.mean(), ref, 1e-12);
    double nll = 0;  // token_nll agrees on each kept row
    for (int t : {0, 2, 3}) nll += token_nll(std::span<const float>(logits).subspan(t * vocab, vocab), targets[t]);
    EXPECT_NEAR(ce.sum, nll, 1e-12);
    std::vector<float> dlogits(logits.size(), 1.0f);
    const CrossEntropySum fused = cross_entropy_forward_backward(logits, vocab, targets, 1.0 / ce.count, dlogits);
    EXPECT_EQ(fused.sum, ce.sum);  // the forward's sum, bit for bit, from the same log-sum-exp
    EXPECT_EQ(fused.count, ce.count);
    for (int j = 0; j < vocab; ++j) EXPECT_EQ(dlogits[1 * vocab + j], 0.0f);  // ignored rows: written 0
    auto loss = [&] { return bwdtest::ref_cross_entropy(to_double(logits), vocab, targets); };
    check_grad("cross-entropy dlogits", logits, dlogits, loss);
    // In place gives the same bits.
    std::vector<float> in_place = logits;
    cross_entropy_forward_backward(in_place, vocab, targets, 1.0 / ce.count, in_place);
    EXPECT_EQ(in_place, dlogits);
}

TEST(CrossEntropyBackward, TiedLmHeadAddsBothGradientsIntoTheTable) {
    const int vocab = 6, d = 4;
    const std::vector<int32_t> ids = {1, 4, 4, 0}, targets = {4, 4, 0, kIgnoreIndex};
    const int n = static_cast<int>(ids.size());
    std::vector<float> table = random_vec(vocab * d, 42);
    // Forward: h = embed(ids); logits = h table^T; the loss.
    std::vector<float> h(n * d), logits(n * vocab);
    embed_tokens(table, d, ids, h);
    linear(h, n, d, table, {}, vocab, logits);
    const CrossEntropySum ce = cross_entropy_forward(logits, vocab, targets);
    // Backward: the LM head's weight gradient and the embedding's scatter-add go into one buffer.
    std::vector<float> dlogits(logits.size()), dh(n * d, 0.0f), dtable(vocab * d, 0.0f);
    cross_entropy_forward_backward(logits, vocab, targets, 1.0 / ce.count, dlogits);
    linear_backward(h, n, d, table, vocab, dlogits, dh, dtable, {});
    embed_tokens_backward(ids, d, dh, dtable);
    auto loss = [&] {
        bwdtest::Vec hd(n * d);
        for (int t = 0; t < n; ++t)
            for (int j = 0; j < d; ++j) hd[t * d + j] = table[ids[t] * d + j];
        return bwdtest::ref_cross_entropy(bwdtest::ref_linear(hd, d, table, {}, vocab), vocab, targets);
    };
    check_grad("tied lm head dtable", table, dtable, loss);
}

}  // namespace
}  // namespace epmoe
