// The backward ops composed into one decoder layer and the loss, as the training loop will run them with every
// expert local (no MPI): embeddings -> RMSNorm -> attention -> residual -> RMSNorm -> gate, router, experts and
// Qwen2-MoE's shared expert -> residual -> final RMSNorm -> LM head (tied or not) -> cross-entropy. Every
// parameter's gradient against central finite differences of the same stack in double precision (the routed
// experts fixed to the ones route() picked).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "backward_check.hpp"
#include "epmoe/moe/router.hpp"
#include "epmoe/ops/attention.hpp"
#include "epmoe/ops/attention_backward.hpp"
#include "epmoe/ops/gate.hpp"
#include "epmoe/ops/loss.hpp"
#include "epmoe/ops/norm.hpp"
#include "epmoe/ops/swiglu.hpp"

namespace epmoe {
namespace {

using bwdtest::random_vec;
using bwdtest::to_double;
using bwdtest::Vec;

constexpr int kD = 8, kVocab = 11, kExperts = 4, kTopK = 2, kFf = 6, kSharedFf = 5;
constexpr double kEps = 1e-6;

struct LayerCase {
    std::string name;
    GateKind gate;
    bool norm_topk, shared, tied;
    QkNorm qk_norm;
    int window;
    bool bias;
};

// Every parameter of the stack; a gradient has the same layout.
struct LayerParams {
    std::vector<float> table, post_norm, w_gate, shared_gate, final_norm, head;  // head empty when tied
    AttentionWeights attn;                                                       // with input_norm
    std::vector<ExpertWeights> experts;                                          // [num_experts]
    DenseMlp shared;                                                             // d_ff 0 when none
    // (name, tensor) of every parameter, for the finite differences.
    std::vector<std::pair<std::string, std::vector<float>*>> tensors() {
        const char* names[] = {"embed",  "input_norm",  "wq",         "wk",     "wv",     "wo",
                               "bq",     "bk",          "bv",         "q_norm", "k_norm", "post_norm",
                               "w_gate", "shared_gate", "final_norm", "head"};
        std::vector<float>* ptrs[] = {&table,   &attn.input_norm, &attn.wq,    &attn.wk,     &attn.wv,     &attn.wo,
                                      &attn.bq, &attn.bk,         &attn.bv,    &attn.q_norm, &attn.k_norm, &post_norm,
                                      &w_gate,  &shared_gate,     &final_norm, &head};
        std::vector<std::pair<std::string, std::vector<float>*>> t;
        for (size_t i = 0; i < std::size(names); ++i) t.emplace_back(names[i], ptrs[i]);
        for (size_t e = 0; e < experts.size(); ++e) {
            t.emplace_back("expert" + std::to_string(e) + ".w13", &experts[e].w13);
            t.emplace_back("expert" + std::to_string(e) + ".w2", &experts[e].w2);
        }
        if (shared.d_ff > 0) {
            t.emplace_back("shared.w13", &shared.w.w13);
            t.emplace_back("shared.w2", &shared.w.w2);
        }
        return t;
    }
};

DecoderShape layer_shape(const LayerCase& c) {
    DecoderShape s;
    s.vocab_size = kVocab, s.num_heads = 4, s.num_kv_heads = 2, s.head_dim = 6, s.rope_theta = 100;
    s.sliding_window = c.window, s.qkv_bias = c.bias, s.qk_norm = c.qk_norm, s.tie_word_embeddings = c.tied;
    return s;
}

std::vector<float> near_one(int n, uint64_t seed) {
    std::vector<float> g = random_vec(n, seed, 0.3f);
    for (float& v : g) v += 1.0f;
    return g;
}

LayerParams layer_params(const LayerCase& c, const DecoderShape& s) {
    const int q_dim = s.num_heads * s.head_dim, kv_dim = s.num_kv_heads * s.head_dim;
    LayerParams p;
    p.table = random_vec(kVocab * kD, 101);
    p.attn.input_norm = near_one(kD, 102);
    p.attn.wq = random_vec(q_dim * kD, 103, 0.6f), p.attn.wk = random_vec(kv_dim * kD, 104, 0.6f);
    p.attn.wv = random_vec(kv_dim * kD, 105, 0.6f), p.attn.wo = random_vec(kD * q_dim, 106, 0.4f);
    if (c.bias)
        p.attn.bq = random_vec(q_dim, 107, 0.3f), p.attn.bk = random_vec(kv_dim, 108, 0.3f),
        p.attn.bv = random_vec(kv_dim, 109, 0.3f);
    if (c.qk_norm != QkNorm::kNone) {
        const bool whole = c.qk_norm == QkNorm::kWhole;
        p.attn.q_norm = near_one(whole ? q_dim : s.head_dim, 110);
        p.attn.k_norm = near_one(whole ? kv_dim : s.head_dim, 111);
    }
    p.post_norm = near_one(kD, 112);
    p.w_gate = random_vec(kExperts * kD, 204, 0.8f);
    for (int e = 0; e < kExperts; ++e)
        p.experts.push_back({random_vec(2 * kFf * kD, 120 + e, 0.6f), random_vec(kD * kFf, 130 + e, 0.6f), {}, 0});
    if (c.shared) {
        p.shared = {kSharedFf,
                    {random_vec(2 * kSharedFf * kD, 140, 0.6f), random_vec(kD * kSharedFf, 141, 0.6f), {}, 0}};
        p.shared_gate = random_vec(kD, 142);
    }
    p.final_norm = near_one(kD, 143);
    if (!c.tied) p.head = random_vec(kVocab * kD, 144);
    return p;
}

LayerParams layer_zero_like(LayerParams p) {
    for (auto& [name, t] : p.tensors()) std::fill(t->begin(), t->end(), 0.0f);
    return p;
}

// The loss in double, routed to the experts in ids [n, top_k].
double ref_loss(const LayerParams& p, const LayerCase& c, const DecoderShape& s, const std::vector<int32_t>& tokens,
                const std::vector<int32_t>& targets, const std::vector<int32_t>& ids) {
    const size_t n = tokens.size();
    Vec h(n * kD);
    for (size_t t = 0; t < n; ++t)
        for (int j = 0; j < kD; ++j) h[t * kD + j] = p.table[tokens[t] * kD + j];
    const Vec a = bwdtest::ref_attention(p.attn, s, kD, kEps, bwdtest::ref_rms_norm(h, p.attn.input_norm, kEps));
    for (size_t i = 0; i < h.size(); ++i) h[i] += a[i];
    const Vec x = bwdtest::ref_rms_norm(h, p.post_norm, kEps);
    const Vec w = bwdtest::ref_route_weights(bwdtest::ref_linear(x, kD, p.w_gate, {}, kExperts), kExperts, ids, kTopK,
                                             c.gate, c.norm_topk);
    for (size_t t = 0; t < n; ++t) {
        const Vec xt(x.begin() + t * kD, x.begin() + (t + 1) * kD);
        for (int i = 0; i < kTopK; ++i) {
            const ExpertWeights& ew = p.experts[ids[t * kTopK + i]];
            const Vec y = bwdtest::ref_swiglu(xt, kD, kFf, ew.w13, ew.w2);
            for (int j = 0; j < kD; ++j) h[t * kD + j] += w[t * kTopK + i] * y[j];
        }
        if (!c.shared) continue;
        const Vec y = bwdtest::ref_swiglu(xt, kD, kSharedFf, p.shared.w.w13, p.shared.w.w2);
        double z = 0;
        for (int j = 0; j < kD; ++j) z += p.shared_gate[j] * xt[j];
        for (int j = 0; j < kD; ++j) h[t * kD + j] += y[j] / (1.0 + std::exp(-z));
    }
    const Vec logits =
        bwdtest::ref_linear(bwdtest::ref_rms_norm(h, p.final_norm, kEps), kD, c.tied ? p.table : p.head, {}, kVocab);
    return bwdtest::ref_cross_entropy(logits, kVocab, targets);
}

// What the FP32 forward keeps for the backward (llm.c's ActivationTensors), shapes with n tokens.
struct LayerActs {
    std::vector<float> h0, x1, attn_out, h1, x2, gate_logits, h2, x3, logits;  // [n, d]; gate [n, E]; logits [n, V]
    AttentionSaved attn;
    Routing routing;
    std::vector<std::vector<int>> slots;                             // [E]: the t * top_k + i routed to e
    std::vector<std::vector<float>> expert_x, expert_h13, expert_y;  // [E]: its rows, in slot order
    SharedExpertSaved shared;
    CrossEntropySum ce;
};

std::vector<float> add(const std::vector<float>& a, const std::vector<float>& b) {
    std::vector<float> c(a.size());
    for (size_t i = 0; i < a.size(); ++i) c[i] = a[i] + b[i];
    return c;
}

// The routed experts of x2 with every expert local, added into moe [n, d].
void experts_forward(const LayerParams& p, LayerActs& a, std::vector<float>& moe) {
    std::vector<float> scratch;
    a.slots.assign(kExperts, {});
    for (size_t slot = 0; slot < a.routing.expert_ids.size(); ++slot)
        a.slots[a.routing.expert_ids[slot]].push_back(static_cast<int>(slot));
    a.expert_x.resize(kExperts), a.expert_h13.resize(kExperts), a.expert_y.resize(kExperts);
    for (int e = 0; e < kExperts; ++e) {
        const std::vector<int>& slots = a.slots[e];
        a.expert_x[e].resize(slots.size() * kD), a.expert_y[e].resize(slots.size() * kD);
        for (size_t r = 0; r < slots.size(); ++r) std::copy_n(&a.x2[slots[r] / kTopK * kD], kD, &a.expert_x[e][r * kD]);
        expert_forward_train(p.experts[e], kD, kFf, a.expert_x[e], a.expert_y[e], a.expert_h13[e], scratch);
        for (size_t r = 0; r < slots.size(); ++r)
            for (int j = 0; j < kD; ++j)
                moe[slots[r] / kTopK * kD + j] += a.routing.weights[slots[r]] * a.expert_y[e][r * kD + j];
    }
}

LayerActs layer_forward(const LayerParams& p, const LayerCase& c, const DecoderShape& s,
                        const std::vector<int32_t>& tokens, const std::vector<int32_t>& targets,
                        const std::vector<float>& bias) {
    const int n = static_cast<int>(tokens.size());
    LayerActs a;
    a.h0.resize(n * kD), a.x1.resize(n * kD), a.attn_out.resize(n * kD), a.x2.resize(n * kD), a.x3.resize(n * kD);
    embed_tokens(p.table, kD, tokens, a.h0);
    rms_norm(a.h0, p.attn.input_norm, kEps, a.x1);
    attention_forward_train(p.attn, s, kD, kEps, a.x1, n, a.attn_out, a.attn);
    a.h1 = add(a.h0, a.attn_out);
    rms_norm(a.h1, p.post_norm, kEps, a.x2);
    a.gate_logits.resize(n * kExperts);
    gate_logits(a.x2, p.w_gate, kD, kExperts, a.gate_logits);
    a.routing = route(a.gate_logits, kExperts, kTopK, bias, c.gate, c.norm_topk);
    std::vector<float> moe(n * kD, 0.0f), scratch;
    experts_forward(p, a, moe);
    if (c.shared) add_shared_expert_train(p.shared, p.shared_gate, kD, a.x2, moe, a.shared, scratch);
    a.h2 = add(a.h1, moe);
    rms_norm(a.h2, p.final_norm, kEps, a.x3);
    a.logits.resize(n * kVocab);
    linear(a.x3, n, kD, c.tied ? p.table : p.head, {}, kVocab, a.logits);
    a.ce = cross_entropy_forward(a.logits, kVocab, targets);
    return a;
}

// The routed experts' backward from dmoe [n, d]: into dx2 [n, d], the experts' gradients, and dweights [n, k].
void experts_backward(const LayerParams& p, const LayerActs& a, const std::vector<float>& dmoe, std::vector<float>& dx2,
                      LayerParams& g, std::vector<float>& dweights) {
    std::vector<float> scratch;
    for (int e = 0; e < kExperts; ++e) {
        const std::vector<int>& slots = a.slots[e];
        std::vector<float> dy(slots.size() * kD), dx(slots.size() * kD, 0.0f);
        for (size_t r = 0; r < slots.size(); ++r) {
            const float* dout = &dmoe[slots[r] / kTopK * kD];
            double dw = 0;  // the combine's backward: d weight = dout . y, dy = weight * dout
            for (int j = 0; j < kD; ++j) {
                dw += static_cast<double>(dout[j]) * a.expert_y[e][r * kD + j];
                dy[r * kD + j] = a.routing.weights[slots[r]] * dout[j];
            }
            dweights[slots[r]] = static_cast<float>(dw);
        }
        expert_backward(p.experts[e], kD, kFf, a.expert_x[e], a.expert_h13[e], dy, dx, g.experts[e], scratch);
        for (size_t r = 0; r < slots.size(); ++r)
            for (int j = 0; j < kD; ++j) dx2[slots[r] / kTopK * kD + j] += dx[r * kD + j];
    }
}

// The forward reversed; g (zeroed) receives every gradient.
void layer_backward(const LayerParams& p, const LayerCase& c, const DecoderShape& s, const std::vector<int32_t>& tokens,
                    const std::vector<int32_t>& targets, const LayerActs& a, LayerParams& g) {
    const int n = static_cast<int>(tokens.size());
    std::vector<float> dlogits(a.logits.size()), dx3(n * kD, 0.0f), dh2(n * kD, 0.0f);
    cross_entropy_forward_backward(a.logits, kVocab, targets, 1.0 / static_cast<double>(a.ce.count), dlogits);
    linear_backward(a.x3, n, kD, c.tied ? p.table : p.head, kVocab, dlogits, dx3, c.tied ? g.table : g.head, {});
    rms_norm_backward(a.h2, p.final_norm, kEps, dx3, dh2, g.final_norm);
    // h2 = h1 + moe: dh1 = dh2 + (through the MoE block), dmoe = dh2.
    std::vector<float> dh1 = dh2, dx2(n * kD, 0.0f), dweights(n * kTopK), dgate(n * kExperts, 0.0f);
    std::vector<float> scratch;
    if (c.shared)
        shared_expert_backward(p.shared, p.shared_gate, kD, a.x2, a.shared, dh2, dx2, g.shared.w, g.shared_gate,
                               scratch);
    experts_backward(p, a, dh2, dx2, g, dweights);
    route_weights_backward(a.gate_logits, kExperts, a.routing.expert_ids, kTopK, c.gate, c.norm_topk, dweights, dgate);
    gate_logits_backward(a.x2, p.w_gate, kD, kExperts, dgate, dx2, g.w_gate);
    rms_norm_backward(a.h1, p.post_norm, kEps, dx2, dh1, g.post_norm);
    // h1 = h0 + attention(rms_norm(h0)).
    std::vector<float> dh0 = dh1, dx1(n * kD, 0.0f);
    attention_backward(p.attn, s, kD, kEps, a.x1, a.attn, dh1, dx1, g.attn);
    rms_norm_backward(a.h0, p.attn.input_norm, kEps, dx1, dh0, g.attn.input_norm);
    embed_tokens_backward(tokens, kD, dh0, g.table);
}

void check_layer_case(const LayerCase& c) {
    SCOPED_TRACE(c.name);
    const DecoderShape s = layer_shape(c);
    LayerParams p = layer_params(c, s);
    const std::vector<int32_t> tokens = {3, 7, 0, 7, 10, 2, 5}, targets = {7, 0, kIgnoreIndex, 10, 2, 5, 9};
    // A selection bias under sigmoid (aux-loss-free balancing's use): it picks experts and takes no gradient.
    const std::vector<float> bias =
        c.gate == GateKind::kSigmoid ? random_vec(kExperts, 150, 0.2f) : std::vector<float>();
    const LayerActs a = layer_forward(p, c, s, tokens, targets, bias);
    const std::vector<int32_t> ids = a.routing.expert_ids;
    for (int e = 0; e < kExperts; ++e) EXPECT_FALSE(a.slots[e].empty()) << "expert " << e << " has no tokens";
    EXPECT_NEAR(a.ce.mean(), ref_loss(p, c, s, tokens, targets, ids), 1e-5 * a.ce.mean());
    LayerParams g = layer_zero_like(p);
    layer_backward(p, c, s, tokens, targets, a, g);
    auto loss = [&] { return ref_loss(p, c, s, tokens, targets, ids); };
    auto params = p.tensors(), grads = g.tensors();
    for (size_t i = 0; i < params.size(); ++i)
        if (!params[i].second->empty())
            bwdtest::check_grad(c.name + " " + params[i].first, *params[i].second, *grads[i].second, loss);
}

TEST(LayerBackward, MixtralLikeMatchesFiniteDifferences) {
    check_layer_case({"mixtral", GateKind::kSoftmax, true, false, false, QkNorm::kNone, 4, false});
}

TEST(LayerBackward, Qwen2MoeLikeMatchesFiniteDifferences) {
    check_layer_case({"qwen2_moe", GateKind::kSoftmax, false, true, false, QkNorm::kNone, 0, true});
}

TEST(LayerBackward, OlmoeLikeTiedMatchesFiniteDifferences) {
    check_layer_case({"olmoe tied", GateKind::kSoftmax, false, false, true, QkNorm::kWhole, 0, false});
}

TEST(LayerBackward, SigmoidGatesMatchFiniteDifferences) {
    check_layer_case({"qwen3 sigmoid norm tied", GateKind::kSigmoid, true, false, true, QkNorm::kPerHead, 3, false});
    check_layer_case({"sigmoid shared", GateKind::kSigmoid, false, true, false, QkNorm::kPerHead, 0, true});
}

}  // namespace
}  // namespace epmoe
