#include "epmoe/model/synthetic.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "epmoe/base/error.hpp"
#include "epmoe/sim/sim.hpp"

namespace epmoe {
namespace {

uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// Tensor kinds of the synthetic model; the tensor id mixes layer, kind and expert.
enum Kind : uint64_t { kGate = 1, kW1 = 2, kW3 = 3, kW2 = 4, kCentre = 5, kToken = 6, kCluster = 7 };

uint64_t tensor_id(int layer, Kind kind, int expert) {
    return (static_cast<uint64_t>(layer) << 40) ^ (static_cast<uint64_t>(kind) << 32) ^ static_cast<uint64_t>(expert);
}

// Uniform in [-scale, scale).
void fill_uniform(std::vector<float>& out, size_t n, uint64_t seed, uint64_t id, float scale) {
    out.resize(n);
    for (size_t i = 0; i < n; ++i) out[i] = scale * (2.0f * hash_uniform(seed, id, i, 0) - 1.0f);
}

// hash_uniform in two halves: the prefix depends on (seed, a, b) only, so a row of c values hashes it once.
uint64_t hash_prefix(uint64_t seed, uint64_t a, uint64_t b) {
    return splitmix64(splitmix64(splitmix64(seed ^ 0x243f6a8885a308d3ULL) ^ a) ^ b);
}

float hash_finish(uint64_t prefix, uint64_t c) {
    return static_cast<float>(splitmix64(prefix ^ c) >> 40) * (1.0f / 16777216.0f);
}

// Standard normal from two uniforms (Box-Muller), from hash_prefix(seed, a, b) and c.
float gaussian_at(uint64_t prefix, uint64_t c) {
    double u1 = 1.0 - hash_finish(prefix, c);  // (0, 1]
    double u2 = hash_finish(prefix, c ^ 0x5555555555555555ULL);
    return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2));
}

float gaussian(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) { return gaussian_at(hash_prefix(seed, a, b), c); }

}  // namespace

float hash_uniform(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
    return hash_finish(hash_prefix(seed, a, b), c);
}

Model make_synthetic_model(const ModelShape& shape, uint64_t seed, const std::function<bool(int, int)>& owns,
                           std::shared_ptr<const MlpKernel> kernel) {
    const size_t d = shape.d_model, f = shape.d_ff;
    // Scales: gate logits of standard deviation ~2 on unit-RMS input (sharp but not degenerate routing);
    // expert weights of variance 1/fan_in, with the output layer damped so the residual stream stays O(1).
    const float gate_scale = 2.0f * std::sqrt(3.0f / shape.d_model);
    const float in_scale = std::sqrt(3.0f / shape.d_model);
    const float out_scale = 0.5f * std::sqrt(3.0f / shape.d_ff);
    Model model;
    model.shape = shape;
    model.kernel = std::move(kernel);
    model.layers.resize(shape.num_layers);
    for (int l = 0; l < shape.num_layers; ++l) {
        MoeLayer& layer = model.layers[l];
        fill_uniform(layer.gate, shape.num_experts * d, seed, tensor_id(l, kGate, 0), gate_scale);
        layer.norm.assign(d, 1.0f);
        for (int e = 0; e < shape.num_experts; ++e) {
            if (!owns(l, e)) continue;
            ExpertWeights& w = layer.experts[e];
            if (sim::simulated()) continue;  // simulated experts hold no weights (sim.hpp)
            std::vector<float> w1, w3;
            fill_uniform(w1, f * d, seed, tensor_id(l, kW1, e), in_scale);
            fill_uniform(w3, f * d, seed, tensor_id(l, kW3, e), in_scale);
            w.w13 = std::move(w1);
            w.w13.insert(w.w13.end(), w3.begin(), w3.end());
            fill_uniform(w.w2, d * f, seed, tensor_id(l, kW2, e), out_scale);
            model.kernel->prepare(w, shape.d_model, shape.d_ff);
        }
    }
    return model;
}

SyntheticWorkload::SyntheticWorkload(const WorkloadConfig& config, int d_model, uint64_t seed)
    : config_(config), d_model_(d_model), seed_(seed) {
    const int c = config.num_clusters;
    cdf_.resize(c);
    double sum = 0;
    for (int r = 0; r < c; ++r) sum += std::pow(r + 1.0, -config.skew);
    double acc = 0;
    for (int r = 0; r < c; ++r) {
        acc += std::pow(r + 1.0, -config.skew) / sum;
        cdf_[r] = acc;
    }
    cdf_.back() = 1.0;
    centres_.resize(static_cast<size_t>(c) * d_model);
    for (int k = 0; k < c; ++k)
        for (int j = 0; j < d_model; ++j)
            centres_[static_cast<size_t>(k) * d_model + j] = gaussian(seed, tensor_id(0, kCentre, k), j, 0);
}

int SyntheticWorkload::cluster_of(int step, int64_t token) const {
    double u = hash_uniform(seed_, tensor_id(step, kCluster, 0), static_cast<uint64_t>(token), 0);
    int rank = static_cast<int>(std::upper_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
    rank = std::min(rank, config_.num_clusters - 1);
    auto shift = static_cast<int64_t>(std::floor(config_.drift * step));
    return static_cast<int>((rank + shift) % config_.num_clusters);
}

void SyntheticWorkload::fill(int step, int64_t first_token, int64_t num_tokens, std::span<float> out) const {
    EPMOE_ASSERT(out.size() == static_cast<size_t>(num_tokens) * d_model_);
    const float noise = static_cast<float>(config_.noise);
    for (int64_t t = 0; t < num_tokens; ++t) {
        const int64_t g = first_token + t;
        const float* centre = &centres_[static_cast<size_t>(cluster_of(step, g)) * d_model_];
        float* row = &out[static_cast<size_t>(t) * d_model_];
        const uint64_t prefix = hash_prefix(seed_, tensor_id(step, kToken, 0), static_cast<uint64_t>(g));
        for (int j = 0; j < d_model_; ++j) row[j] = centre[j] + noise * gaussian_at(prefix, j);
    }
}

}  // namespace epmoe
