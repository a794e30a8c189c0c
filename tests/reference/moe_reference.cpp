#include "moe_reference.hpp"

#include <algorithm>
#include <cmath>

#include "epmoe/base/error.hpp"

namespace epmoe::reference {
namespace {

std::vector<double> swiglu(const ExpertWeights& w, int d, int f, const std::vector<double>& x) {
    std::vector<double> act(f), y(d, 0.0);
    for (int j = 0; j < f; ++j) {
        double a = 0, b = 0;
        for (int i = 0; i < d; ++i) {
            a += static_cast<double>(w.w13[static_cast<size_t>(j) * d + i]) * x[i];
            b += static_cast<double>(w.w13[static_cast<size_t>(f + j) * d + i]) * x[i];
        }
        act[j] = a / (1.0 + std::exp(-a)) * b;
    }
    for (int i = 0; i < d; ++i)
        for (int j = 0; j < f; ++j) y[i] += static_cast<double>(w.w2[static_cast<size_t>(i) * f + j]) * act[j];
    return y;
}

// Routes one normalised token x [d_model] of `layer`: scores every expert (softmax over E, or sigmoid), selects
// the top_k largest score + bias[e] (bias: [num_experts] or null) and writes their ids [top_k] and weights
// [top_k] (unbiased scores, renormalised if norm_topk_prob).
void route_token(const ModelShape& s, const MoeLayer& layer, const std::vector<double>& x, const float* bias,
                 int32_t* ids, double* weights) {
    const int d = s.d_model, E = s.num_experts, k = s.top_k;
    std::vector<double> score(E);
    double mx = -1e300, sum = 0;
    for (int e = 0; e < E; ++e) {
        double z = 0;
        for (int i = 0; i < d; ++i) z += static_cast<double>(layer.gate[static_cast<size_t>(e) * d + i]) * x[i];
        score[e] = z;
        mx = std::max(mx, z);
    }
    for (int e = 0; e < E; ++e) {
        if (s.gate == GateKind::kSoftmax)
            sum += score[e] = std::exp(score[e] - mx);
        else
            score[e] = 1.0 / (1.0 + std::exp(-score[e]));
    }
    if (s.gate == GateKind::kSoftmax)
        for (int e = 0; e < E; ++e) score[e] /= sum;
    // Selection by repeated arg-max; a strict > keeps the lower index on ties.
    std::vector<bool> taken(E, false);
    double wsum = 0;
    for (int i = 0; i < k; ++i) {
        int best = -1;
        for (int e = 0; e < E; ++e) {
            double key = score[e] + (bias == nullptr ? 0.0 : bias[e]);
            double best_key = best < 0 ? 0 : score[best] + (bias == nullptr ? 0.0 : bias[best]);
            if (!taken[e] && (best < 0 || key > best_key)) best = e;
        }
        taken[best] = true;
        ids[i] = best;
        wsum += score[best];
    }
    for (int i = 0; i < k; ++i) weights[i] = s.norm_topk_prob ? score[ids[i]] / wsum : score[ids[i]];
}

// w itself, after checking that its kernel kept the FP32 matrices the reference reads.
const ExpertWeights& fp32_weights(const ExpertWeights& w) {
    if (w.w13.empty() || w.w2.empty()) fail("reference: an MLP's FP32 weights were released by its kernel");
    return w;
}

}  // namespace

std::vector<double> layer_mlp(const Model& model, int layer, const std::vector<double>& x) {
    const ModelShape& s = model.shape;
    const MoeLayer& m = model.layers.at(static_cast<size_t>(layer));
    const int d = s.d_model;
    if (m.dense) return swiglu(fp32_weights(m.dense->w), d, m.dense->d_ff, x);
    std::vector<int32_t> ids(s.top_k);
    std::vector<double> weights(s.top_k), out(d, 0.0);
    route_token(s, m, x, nullptr, ids.data(), weights.data());
    for (int i = 0; i < s.top_k; ++i) {
        auto it = m.experts.find(ids[i]);
        if (it == m.experts.end()) fail("reference: layer ", layer, " does not hold expert ", ids[i]);
        std::vector<double> y = swiglu(fp32_weights(it->second), d, s.d_ff, x);
        for (int j = 0; j < d; ++j) out[j] += weights[i] * y[j];
    }
    if (m.shared_expert) {
        double z = 0;
        for (int i = 0; i < d; ++i) z += static_cast<double>(m.shared_expert_gate[i]) * x[i];
        const double g = 1.0 / (1.0 + std::exp(-z));
        std::vector<double> y = swiglu(fp32_weights(m.shared_expert->w), d, m.shared_expert->d_ff, x);
        for (int j = 0; j < d; ++j) out[j] += g * y[j];
    }
    return out;
}

Output forward(const Model& model, std::vector<float> hidden, double capacity_factor,
               const std::vector<float>& biases) {
    const ModelShape& s = model.shape;
    const int d = s.d_model, E = s.num_experts, k = s.top_k;
    const size_t n = hidden.size() / d;
    Output out;
    for (int l = 0; l < s.num_layers; ++l) {
        const MoeLayer& layer = model.layers[l];
        std::vector<int32_t> ids(n * k);
        std::vector<float> weights(n * k);
        std::vector<uint8_t> kept(n * k, 1);
        std::vector<std::vector<double>> xn(n, std::vector<double>(d));
        for (size_t t = 0; t < n; ++t) {
            double ms = 0;
            for (int i = 0; i < d; ++i) ms += static_cast<double>(hidden[t * d + i]) * hidden[t * d + i];
            double inv = 1.0 / std::sqrt(ms / d + s.rms_norm_eps);
            // Round the normalised input to float, as any float runtime must before its GEMMs.
            for (int i = 0; i < d; ++i) xn[t][i] = static_cast<float>(hidden[t * d + i] * inv) * layer.norm[i];
            const float* bias = biases.empty() ? nullptr : &biases[static_cast<size_t>(l) * E];
            std::vector<double> w(k);
            route_token(s, layer, xn[t], bias, &ids[t * k], w.data());
            for (int i = 0; i < k; ++i) weights[t * k + i] = static_cast<float>(w[i]);
        }
        if (capacity_factor > 0) {
            auto cap = static_cast<int64_t>(std::ceil(capacity_factor * static_cast<double>(n) * k / E));
            std::vector<int64_t> used(E, 0);
            for (size_t a = 0; a < n * k; ++a) kept[a] = used[ids[a]]++ < cap;
        }
        for (size_t t = 0; t < n; ++t) {
            std::vector<double> acc(d, 0.0);
            for (int i = 0; i < k; ++i) {
                if (!kept[t * k + i]) continue;
                std::vector<double> y = swiglu(layer.experts.at(ids[t * k + i]), d, s.d_ff, xn[t]);
                for (int j = 0; j < d; ++j) acc[j] += weights[t * k + i] * y[j];
            }
            for (int j = 0; j < d; ++j) hidden[t * d + j] = static_cast<float>(hidden[t * d + j] + acc[j]);
        }
        out.ids.push_back(ids);
        out.weights.push_back(weights);
        out.kept.push_back(kept);
    }
    out.hidden = std::move(hidden);
    return out;
}

double row_rel_l2(const float* a, const float* b, int n) {
    double diff = 0, norm = 0;
    for (int i = 0; i < n; ++i) {
        diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
        norm += static_cast<double>(b[i]) * b[i];
    }
    return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

}  // namespace epmoe::reference
