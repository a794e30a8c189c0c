// Training through the expert-parallel MoE block (moe/train.hpp) at whatever rank count this runs with (ctest:
// 1 to 4 ranks). For each case: (1) the training forward equals moe_layer_forward's output; (2) every gradient
// (dx_norm through the experts and the gate, each expert's dW gathered from its owner, dlogits, the gate
// weight's through gate_logits_backward) matches central finite differences of a double-precision reference
// of the whole block, loss L = sum(out * R); (3) with a capacity factor, dropped slots get no gradient;
// (4) softmax and sigmoid gates, norm_topk_prob on and off, uneven tokens per rank, a rank with none. And the
// results equal those of one rank (the same block run on rank 0 alone) within 1e-5.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "../unit/ops/backward_check.hpp"
#include "epmoe/model/synthetic.hpp"
#include "epmoe/moe/train.hpp"
#include "epmoe/ops/gate.hpp"

namespace epmoe {
namespace {

using bwdtest::Vec;

constexpr int64_t kTokens = 13;  // over all ranks
constexpr int kDModel = 8;
constexpr uint64_t kSeed = 11;

struct Case {
    const char* name;
    GateKind gate;
    bool norm_topk;
    double capacity_factor = 0;
    std::vector<int> share = {2, 5, 0, 3};  // rank r gets a share[r % size] part of the tokens (size > 1)
    int top_k = 2;
    bool with_bias = false;  // a selection bias (selection is not differentiated)
};

ModelShape shape_of(const Case& c) {
    ModelShape s;
    s.num_layers = 1;
    s.d_model = kDModel;
    s.d_ff = 12;
    s.num_experts = 6;
    s.top_k = c.top_k;
    s.gate = c.gate;
    s.norm_topk_prob = c.norm_topk;
    return s;
}

// [begin, end) of rank's tokens: consecutive blocks in rank order, sized by the case's shares.
std::pair<int64_t, int64_t> rows_of(const Case& c, int rank, int ranks) {
    if (ranks == 1) return {0, kTokens};
    auto share = [&](int r) { return static_cast<int64_t>(c.share[r % c.share.size()]); };
    int64_t total = 0, before = 0;
    for (int r = 0; r < ranks; ++r) total += share(r);
    for (int r = 0; r < rank; ++r) before += share(r);
    return {kTokens * before / total, kTokens * (before + share(rank)) / total};
}

// [num_tokens, d_model] values in [-1, 1) from (kSeed, what, token, column).
std::vector<float> global_rows(uint64_t what) {
    std::vector<float> v(kTokens * kDModel);
    for (size_t i = 0; i < v.size(); ++i) v[i] = 2.0f * hash_uniform(kSeed, what, i / kDModel, i % kDModel) - 1.0f;
    return v;
}

// Everything one rank's run of the block yields: its tokens' output and gradients, its experts' gradients.
struct BlockRun {
    std::vector<float> out, out_inference;  // [num_tokens, d_model] training forward, moe_layer_forward
    std::vector<float> dx_experts, dx;      // [num_tokens, d_model] through the experts; plus the gate's
    std::vector<float> dlogits;             // [num_tokens, num_experts]
    std::vector<float> dgate;               // [num_experts, d_model], summed over ranks
    std::map<int, ExpertWeights> dexperts;  // this rank's experts
    MoeBlockSaved saved;
};

BlockRun run_block(const mpi::Comm& comm, const Model& model, const Placement& placement, const Case& c, int64_t begin,
                   int64_t end, const std::vector<float>& bias) {
    const ModelShape& s = model.shape;
    const int d = s.d_model;
    const MoeLayer& layer = model.layers[0];
    const std::vector<float> x_all = global_rows(1), r_all = global_rows(2);
    const std::vector<float> x(x_all.begin() + begin * d, x_all.begin() + end * d),
        dout(r_all.begin() + begin * d, r_all.begin() + end * d);
    const DispatchOptions options{c.capacity_factor, 1};
    BlockRun run;
    LayerTimes times;
    DispatchBuffers buf, buf_inference, buf_backward;  // the backward needs nothing the forward left in buf
    run.out.resize(x.size());
    moe_block_forward_train(comm, layer.experts, s, placement, layer.gate, x, bias, begin, kTokens, options, run.out,
                            run.saved, times, buf);
    run.out_inference.resize(x.size());
    moe_layer_forward(comm, layer.experts, *model.kernel, s, placement, x, run.saved.routing, begin, kTokens, options,
                      run.out_inference, times, buf_inference);
    run.dx.assign(x.size(), 0.0f);
    run.dlogits.assign((end - begin) * s.num_experts, -7.0f);  // written, not added to
    moe_block_backward(comm, layer.experts, s, placement, x, run.saved, dout, begin, kTokens, options, run.dx,
                       run.dexperts, run.dlogits, times, buf_backward);
    run.dx_experts = run.dx;
    run.dgate.assign(layer.gate.size(), 0.0f);
    gate_logits_backward(x, layer.gate, d, s.num_experts, run.dlogits, run.dx, run.dgate);
    mpi::allreduce(comm, std::span<float>(run.dgate), mpi::Op::kSum);
    return run;
}

// The block's results on rank 0: every rank's tokens in order, every expert's gradients from its owner.
struct Gathered {
    std::vector<float> out, dx, dlogits, dgate;
    std::vector<int32_t> ids;
    std::vector<uint8_t> kept;
    std::map<int, ExpertWeights> dexperts;
};

Gathered gather(const mpi::Comm& comm, const ModelShape& s, const Placement& placement, const BlockRun& run) {
    Gathered g;
    g.out = mpi::gatherv_to_root<float>(comm, run.out);
    g.dx = mpi::gatherv_to_root<float>(comm, run.dx);
    g.dlogits = mpi::gatherv_to_root<float>(comm, run.dlogits);
    g.ids = mpi::gatherv_to_root<int32_t>(comm, run.saved.routing.expert_ids);
    g.kept = mpi::gatherv_to_root<uint8_t>(comm, run.saved.kept);
    g.dgate = run.dgate;
    std::vector<float> mine;  // this rank's experts ascending, w13 then w2 of each
    for (const auto& [e, grad] : run.dexperts) {
        mine.insert(mine.end(), grad.w13.begin(), grad.w13.end());
        mine.insert(mine.end(), grad.w2.begin(), grad.w2.end());
    }
    const std::vector<float> all = mpi::gatherv_to_root<float>(comm, mine);
    if (comm.rank() != 0) return g;
    const size_t n13 = 2ull * s.d_ff * s.d_model, n2 = 1ull * s.d_model * s.d_ff;
    size_t at = 0;
    for (int r = 0; r < comm.size(); ++r)
        for (int e : placement.experts_of(r)) {
            ExpertWeights& grad = g.dexperts[e];
            grad.w13.assign(all.begin() + at, all.begin() + at + n13);
            grad.w2.assign(all.begin() + at + n13, all.begin() + at + n13 + n2);
            at += n13 + n2;
        }
    EXPECT_EQ(at, all.size());
    return g;
}

// The block's output [num_tokens, d_model] in double, every token on one process, for the routing given (ids
// and kept held fixed: selection and capacity are not differentiated). logits: the gate logits to use, or empty
// to compute them from x and gate.
Vec reference_out(const ModelShape& s, const std::vector<float>& x, const std::vector<float>& gate,
                  const std::map<int, ExpertWeights>& experts, const Gathered& g, const std::vector<float>& logits) {
    const int d = s.d_model, k = s.top_k;
    const Vec z = logits.empty() ? bwdtest::ref_linear(bwdtest::to_double(x), d, gate, {}, s.num_experts)
                                 : bwdtest::to_double(logits);
    const Vec w = bwdtest::ref_route_weights(z, s.num_experts, g.ids, k, s.gate, s.norm_topk_prob);
    Vec out(x.size(), 0.0);
    for (int64_t t = 0; t < kTokens; ++t)
        for (int i = 0; i < k; ++i) {
            if (!g.kept[t * k + i]) continue;
            const ExpertWeights& e = experts.at(g.ids[t * k + i]);
            const Vec y = bwdtest::ref_swiglu(Vec(x.begin() + t * d, x.begin() + (t + 1) * d), d, s.d_ff, e.w13, e.w2);
            for (int j = 0; j < d; ++j) out[t * d + j] += w[t * k + i] * y[j];
        }
    return out;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
    return bwdtest::rel_l2(a, bwdtest::to_double(b));
}

// (2) On rank 0: the gathered output and gradients against the double reference and its finite differences.
void check_against_reference(const Case& c, Model& full, const Gathered& g) {
    const ModelShape& s = full.shape;
    const std::string name = c.name;
    std::vector<float> x = global_rows(1), logits(kTokens * s.num_experts);
    const std::vector<float> r = global_rows(2);
    MoeLayer& layer = full.layers[0];
    gate_logits(x, layer.gate, s.d_model, s.num_experts, logits);  // as the block computed them
    const Vec ref = reference_out(s, x, layer.gate, layer.experts, g, {});
    EXPECT_LE(bwdtest::rel_l2(g.out, ref), 1e-5) << name << ": output";
    auto loss = [&] { return bwdtest::dot(reference_out(s, x, layer.gate, layer.experts, g, {}), r); };
    auto loss_of_logits = [&] { return bwdtest::dot(reference_out(s, x, layer.gate, layer.experts, g, logits), r); };
    bwdtest::check_grad(name + " dx_norm", x, g.dx, loss);
    bwdtest::check_grad(name + " dgate", layer.gate, g.dgate, loss);
    bwdtest::check_grad(name + " dlogits", logits, g.dlogits, loss_of_logits);
    for (auto& [e, w] : layer.experts) {
        bwdtest::check_grad(name + " dw13 of expert " + std::to_string(e), w.w13, g.dexperts.at(e).w13, loss);
        bwdtest::check_grad(name + " dw2 of expert " + std::to_string(e), w.w2, g.dexperts.at(e).w2, loss);
    }
}

// Rank count invariance: the same block run by rank 0 alone, with every token and expert, gives the same
// results within 1e-5 relative L2 per tensor.
void check_against_one_rank(const mpi::Comm& comm, const Case& c, const Model& full, const Gathered& g,
                            const std::vector<float>& bias) {
    const mpi::Comm solo = comm.split(comm.rank(), 0);
    if (comm.rank() != 0) return;
    const Placement one = Placement::make("contiguous", full.shape.num_experts, 1);
    const Gathered g1 = gather(solo, full.shape, one, run_block(solo, full, one, c, 0, kTokens, bias));
    const std::string vs = std::string(c.name) + ", " + std::to_string(comm.size()) + " ranks vs 1: ";
    double worst = 0;
    auto expect_same = [&](const std::string& what, const std::vector<float>& got, const std::vector<float>& one) {
        const double err = rel_l2(got, one);
        EXPECT_LE(err, 1e-5) << vs << what;
        worst = std::max(worst, err);
    };
    expect_same("output", g.out, g1.out);
    expect_same("dx_norm", g.dx, g1.dx);
    expect_same("dlogits", g.dlogits, g1.dlogits);
    expect_same("dgate", g.dgate, g1.dgate);
    for (const auto& [e, grad] : g1.dexperts) {
        expect_same("dw13 of expert " + std::to_string(e), g.dexperts.at(e).w13, grad.w13);
        expect_same("dw2 of expert " + std::to_string(e), g.dexperts.at(e).w2, grad.w2);
    }
    if (std::getenv("EPMOE_FD_VERBOSE")) std::printf("  %s worst %.3e\n", vs.c_str(), worst);
}

// (3) On this rank: a token whose slots were all dropped gets nothing through the experts nor the router, and
// under a sigmoid gate without renormalisation a dropped slot's expert logit gets nothing. Returns the tokens
// with every slot dropped.
int64_t check_drops(const Case& c, const ModelShape& s, const BlockRun& run) {
    const int d = s.d_model, k = s.top_k, num_experts = s.num_experts;
    const int64_t n = run.saved.routing.num_tokens();
    int64_t all_dropped = 0;
    for (int64_t t = 0; t < n; ++t) {
        int kept = 0;
        for (int i = 0; i < k; ++i) {
            kept += run.saved.kept[t * k + i];
            if (!run.saved.kept[t * k + i] && s.gate == GateKind::kSigmoid && !s.norm_topk_prob)
                EXPECT_EQ(run.dlogits[t * num_experts + run.saved.routing.expert_ids[t * k + i]], 0.0f) << c.name;
        }
        if (kept > 0) continue;
        ++all_dropped;
        for (int j = 0; j < d; ++j) EXPECT_EQ(run.dx_experts[t * d + j], 0.0f) << c.name << " token " << t;
        for (int e = 0; e < num_experts; ++e) EXPECT_EQ(run.dlogits[t * num_experts + e], 0.0f) << c.name;
    }
    return all_dropped;
}

void check_case(const Case& c) {
    mpi::Comm comm(MPI_COMM_WORLD);
    const ModelShape s = shape_of(c);
    const Placement placement = Placement::make("contiguous", s.num_experts, comm.size());
    const auto kernel = make_mlp_kernel("onednn", "fp32", /*in_place=*/true);
    const Model mine = make_synthetic_model(
        s, kSeed, [&](int, int e) { return placement.owns(comm.rank(), e); }, kernel);
    Model full = make_synthetic_model(
        s, kSeed, [](int, int) { return true; }, kernel);
    std::vector<float> bias;
    for (int e = 0; c.with_bias && e < s.num_experts; ++e) bias.push_back(0.3f * hash_uniform(kSeed, 3, e, 0) - 0.15f);
    const auto [begin, end] = rows_of(c, comm.rank(), comm.size());
    const BlockRun run = run_block(comm, mine, placement, c, begin, end, bias);
    // (1) No ASSERT_* before the collectives below: a rank that returned early would leave the others waiting.
    EXPECT_EQ(run.out, run.out_inference) << c.name << ": the training forward differs from moe_layer_forward";
    std::vector<int> owned;
    for (const auto& [e, grad] : run.dexperts) owned.push_back(e);
    EXPECT_EQ(owned, placement.experts_of(comm.rank())) << c.name << ": a gradient for each owned expert only";
    const int64_t dropped = mpi::allreduce_one(comm, run.saved.dropped, mpi::Op::kSum);
    const int64_t all_dropped = mpi::allreduce_one(comm, check_drops(c, s, run), mpi::Op::kSum);
    if (c.capacity_factor > 0) {
        EXPECT_GT(dropped, 0) << c.name << ": the capacity case must drop something";
        EXPECT_GT(all_dropped, 0) << c.name << ": the capacity case must drop some token's every slot";
    }
    const Gathered g = gather(comm, s, placement, run);
    check_against_one_rank(comm, c, full, g, bias);
    if (comm.rank() == 0) check_against_reference(c, full, g);
}

TEST(MoeTrainMpi, SoftmaxRenormalised) { check_case({"softmax norm", GateKind::kSoftmax, true}); }
TEST(MoeTrainMpi, SoftmaxWithBias) {
    check_case({"softmax bias", GateKind::kSoftmax, false, 0, {2, 5, 0, 3}, 2, true});
}
TEST(MoeTrainMpi, SoftmaxTop1) { check_case({"softmax k1", GateKind::kSoftmax, false, 0, {1, 1, 1, 1}, 1}); }
TEST(MoeTrainMpi, SigmoidRenormalised) { check_case({"sigmoid norm", GateKind::kSigmoid, true}); }
TEST(MoeTrainMpi, SigmoidFirstRankEmpty) {  // rank 0 holds no token (at 2 ranks or more)
    check_case({"sigmoid, rank 0 empty", GateKind::kSigmoid, false, 0, {0, 3, 1, 1}});
}
TEST(MoeTrainMpi, CapacityDropsSigmoid) { check_case({"capacity sigmoid", GateKind::kSigmoid, false, 0.5}); }
TEST(MoeTrainMpi, CapacityDropsSoftmaxRankEmpty) {
    check_case({"capacity softmax", GateKind::kSoftmax, true, 0.6, {3, 0, 2, 1}, 2, true});
}

}  // namespace
}  // namespace epmoe
