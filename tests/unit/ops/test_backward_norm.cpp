// The backward of RMSNorm (ops/norm.hpp), linear layers and token embeddings (ops/attention_backward.hpp)
// against central finite differences of double-precision forwards (backward_check.hpp).
#include <gtest/gtest.h>

#include <vector>

#include "backward_check.hpp"
#include "epmoe/ops/attention.hpp"
#include "epmoe/ops/attention_backward.hpp"
#include "epmoe/ops/norm.hpp"

namespace epmoe {
namespace {

using bwdtest::check_grad;
using bwdtest::random_vec;
using bwdtest::to_double;

TEST(RmsNormBackward, MatchesFiniteDifferences) {
    const int n = 5, d = 7;
    const double eps = 1e-5;
    std::vector<float> x = random_vec(n * d, 1, 2.0f), g = random_vec(d, 2), r = random_vec(n * d, 3);
    x[3] = 0.01f;  // a row with a small entry and one of tiny rms: eps matters there
    for (int j = 0; j < d; ++j) x[4 * d + j] *= 0.003f;
    std::vector<float> dx(n * d, 0.0f), dg(d, 0.0f);
    rms_norm_backward(x, g, eps, r, dx, dg);
    auto loss = [&] { return bwdtest::dot(bwdtest::ref_rms_norm(to_double(x), g, eps), r); };
    check_grad("rms_norm dx", x, dx, loss, 1e-4, 1e-6);  // a step well below the tiny row's values
    check_grad("rms_norm dg", g, dg, loss);
    // Adds into its outputs: a second call doubles them.
    std::vector<float> dx2 = dx, dg2 = dg;
    rms_norm_backward(x, g, eps, r, dx2, dg2);
    for (int i = 0; i < n * d; ++i) EXPECT_FLOAT_EQ(dx2[i], 2 * dx[i]);
    for (int j = 0; j < d; ++j) EXPECT_FLOAT_EQ(dg2[j], 2 * dg[j]);
}

TEST(LinearBackward, MatchesFiniteDifferencesWithAndWithoutBias) {
    const int n = 6, in = 5, out = 4;
    for (const bool bias : {false, true}) {
        std::vector<float> x = random_vec(n * in, 4), w = random_vec(out * in, 5), r = random_vec(n * out, 6);
        std::vector<float> b = bias ? random_vec(out, 7) : std::vector<float>();
        std::vector<float> dx(n * in, 0.0f), dw(out * in, 0.0f), db(b.size(), 0.0f);
        linear_backward(x, n, in, w, out, r, dx, dw, db);
        auto loss = [&] { return bwdtest::dot(bwdtest::ref_linear(to_double(x), in, w, b, out), r); };
        check_grad("linear dx", x, dx, loss);
        check_grad("linear dw", w, dw, loss);
        if (bias) check_grad("linear db", b, db, loss);
        // Empty outputs are skipped.
        std::vector<float> dw_only(out * in, 0.0f);
        linear_backward(x, n, in, w, out, r, {}, dw_only, {});
        EXPECT_EQ(dw_only, dw);
    }
}

TEST(EmbeddingBackward, ScatterAddsRepeatedIds) {
    const int vocab = 6, d = 3;
    const std::vector<int32_t> ids = {2, 0, 2, 5, 2};
    std::vector<float> table = random_vec(vocab * d, 8), r = random_vec(ids.size() * d, 9), dtable(vocab * d, 0.0f);
    embed_tokens_backward(ids, d, r, dtable);
    auto loss = [&] {
        std::vector<float> out(ids.size() * d);
        embed_tokens(table, d, ids, out);
        return bwdtest::dot(to_double(out), r);
    };
    check_grad("embedding dtable", table, dtable, loss, 1e-6);
    for (int j = 0; j < d; ++j) EXPECT_FLOAT_EQ(dtable[1 * d + j], 0.0f);  // id 1 unused
}

}  // namespace
}  // namespace epmoe
