// The decoder of the synthetic whole model: embeddings, attention and LM head drawn from the seed as the
// synthetic MoE blocks are (src/model/synthetic.cpp), so `epmoe eval` and `generate` run with no files.
#include "epmoe/model/synthetic.hpp"

#include <cmath>

namespace epmoe {
namespace {

// Tensor kinds of the decoder; ids stay apart from the MoE blocks' (synthetic.cpp uses kinds 1-7).
enum DecoderKind : uint64_t { kEmbed = 16, kQ, kK, kV, kO, kBias, kLmHead };

uint64_t decoder_id(int layer, DecoderKind kind) {
    return (static_cast<uint64_t>(layer + 1) << 40) ^ (static_cast<uint64_t>(kind) << 32);
}

// Uniform in [-scale, scale).
std::vector<float> uniform(size_t n, uint64_t seed, uint64_t id, float scale) {
    std::vector<float> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = scale * (2.0f * hash_uniform(seed, id, i, 0) - 1.0f);
    return out;
}

}  // namespace

DecoderWeights make_synthetic_decoder(const ModelShape& shape, uint64_t seed) {
    const DecoderShape& s = shape.decoder;
    const size_t d = shape.d_model, v = s.vocab_size, q = size_t{1} * s.num_heads * s.head_dim,
                 kv = size_t{1} * s.num_kv_heads * s.head_dim;
    const float in_scale = std::sqrt(3.0f / static_cast<float>(d));  // variance 1/fan_in
    DecoderWeights w;
    w.embed = uniform(v * d, seed, decoder_id(-1, kEmbed), std::sqrt(3.0f));  // unit-variance embeddings
    w.final_norm.assign(d, 1.0f);
    if (!s.tie_word_embeddings) w.lm_head = uniform(v * d, seed, decoder_id(-1, kLmHead), in_scale);
    for (int l = 0; l < shape.num_layers; ++l) {
        AttentionWeights& a = w.layers.emplace_back();
        a.input_norm.assign(d, 1.0f);
        a.wq = uniform(q * d, seed, decoder_id(l, kQ), in_scale);
        a.wk = uniform(kv * d, seed, decoder_id(l, kK), in_scale);
        a.wv = uniform(kv * d, seed, decoder_id(l, kV), in_scale);
        a.wo = uniform(d * q, seed, decoder_id(l, kO), 0.5f * std::sqrt(3.0f / static_cast<float>(q)));
        if (s.qkv_bias) {
            std::vector<float> b = uniform(q + 2 * kv, seed, decoder_id(l, kBias), 0.1f);
            a.bq.assign(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(q));
            a.bk.assign(b.begin() + static_cast<std::ptrdiff_t>(q), b.begin() + static_cast<std::ptrdiff_t>(q + kv));
            a.bv.assign(b.begin() + static_cast<std::ptrdiff_t>(q + kv), b.end());
        }
        if (s.qk_norm != QkNorm::kNone) {
            a.q_norm.assign(s.qk_norm == QkNorm::kWhole ? q : s.head_dim, 1.0f);
            a.k_norm.assign(s.qk_norm == QkNorm::kWhole ? kv : s.head_dim, 1.0f);
        }
    }
    return w;
}

}  // namespace epmoe
