// The backward of the gate projection and of the router's weights (ops/gate.hpp) against central finite
// differences: softmax and sigmoid gates, with and without norm_topk_prob, a selection bias (selection is not
// differentiated: the finite differences keep route()'s experts fixed).
#include <gtest/gtest.h>

#include <vector>

#include "backward_check.hpp"
#include "epmoe/moe/router.hpp"
#include "epmoe/ops/gate.hpp"

namespace epmoe {
namespace {

using bwdtest::check_grad;
using bwdtest::random_vec;
using bwdtest::to_double;

TEST(GateBackward, ProjectionMatchesFiniteDifferences) {
    const int n = 5, d = 6, num_experts = 4;
    std::vector<float> x = random_vec(n * d, 11), w = random_vec(num_experts * d, 12),
                       r = random_vec(n * num_experts, 13);
    std::vector<float> dx(n * d, 0.0f), dw(num_experts * d, 0.0f);
    gate_logits_backward(x, w, d, num_experts, r, dx, dw);
    auto loss = [&] { return bwdtest::dot(bwdtest::ref_linear(to_double(x), d, w, {}, num_experts), r); };
    check_grad("gate dx", x, dx, loss);
    check_grad("gate dw_gate", w, dw, loss);
}

TEST(RouterBackward, WeightsMatchFiniteDifferencesForEveryGate) {
    const int n = 6, num_experts = 5, top_k = 2;
    for (const GateKind gate : {GateKind::kSoftmax, GateKind::kSigmoid})
        for (const bool norm_topk : {false, true})
            for (const bool with_bias : {false, true}) {
                std::vector<float> logits = random_vec(n * num_experts, 14, 2.0f), r = random_vec(n * top_k, 15);
                const std::vector<float> bias = with_bias ? random_vec(num_experts, 16, 0.5f) : std::vector<float>();
                const Routing routing = route(logits, num_experts, top_k, bias, gate, norm_topk);
                std::vector<float> dlogits(logits.size(), 0.0f);
                route_weights_backward(logits, num_experts, routing.expert_ids, top_k, gate, norm_topk, r, dlogits);
                // The reference's weights equal route()'s at the unperturbed logits.
                const bwdtest::Vec w = bwdtest::ref_route_weights(to_double(logits), num_experts, routing.expert_ids,
                                                                  top_k, gate, norm_topk);
                for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(routing.weights[i], w[i], 1e-6);
                auto loss = [&] {
                    return bwdtest::dot(bwdtest::ref_route_weights(to_double(logits), num_experts, routing.expert_ids,
                                                                   top_k, gate, norm_topk),
                                        r);
                };
                check_grad(std::string("router dlogits ") + (gate == GateKind::kSoftmax ? "softmax" : "sigmoid") +
                               (norm_topk ? " norm" : "") + (with_bias ? " bias" : ""),
                           logits, dlogits, loss);
                if (gate == GateKind::kSigmoid)  // unselected experts get nothing under sigmoid
                    for (int t = 0; t < n; ++t)
                        for (int e = 0; e < num_experts; ++e) {
                            bool selected = false;
                            for (int i = 0; i < top_k; ++i) selected |= routing.expert_ids[t * top_k + i] == e;
                            if (!selected) {
                                EXPECT_EQ(dlogits[t * num_experts + e], 0.0f);
                            }
                        }
            }
}

}  // namespace
}  // namespace epmoe
