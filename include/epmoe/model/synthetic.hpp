// The synthetic model and workload: deterministic functions of the seed and of global indices, so
// every rank count builds the same weights and sees the same tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "epmoe/base/config.hpp"
#include "epmoe/model/decoder.hpp"
#include "epmoe/model/model.hpp"

namespace epmoe {

// Uniform float in [0, 1) from a seed and up to three indices (counter-based, no state).
float hash_uniform(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);

// Builds every layer's gate and norm, and the experts for which owns(layer, expert) is true.
// Element i of tensor (layer, kind, expert) is a function of (seed, tensor id, i) only. Each expert is
// handed to kernel.prepare as soon as it is made, and the model keeps the kernel.
Model make_synthetic_model(const ModelShape& shape, uint64_t seed, const std::function<bool(int, int)>& owns,
                           std::shared_ptr<const MlpKernel> kernel = default_mlp_kernel());

// Tokens drawn from num_clusters clusters whose popularity follows a Zipf law of exponent skew; the
// popularity ranking moves by drift clusters per step. Token t of step s depends only on (seed, s, t).
// The decoder of the synthetic whole model (embeddings, attention, LM head) for shape.decoder, from the seed;
// every rank builds the same (attention is data-parallel).
DecoderWeights make_synthetic_decoder(const ModelShape& shape, uint64_t seed);

class SyntheticWorkload {
public:
    SyntheticWorkload(const WorkloadConfig& config, int d_model, uint64_t seed);
    // Fills out [num_tokens, d_model] with global tokens [first_token, first_token + num_tokens) of step.
    void fill(int step, int64_t first_token, int64_t num_tokens, std::span<float> out) const;
    // The cluster a token was drawn from (for tests and analysis).
    int cluster_of(int step, int64_t token) const;

private:
    WorkloadConfig config_;
    int d_model_;
    uint64_t seed_;
    std::vector<double> cdf_;     // [num_clusters] cumulative Zipf probabilities by popularity rank
    std::vector<float> centres_;  // [num_clusters, d_model]
};

}  // namespace epmoe
