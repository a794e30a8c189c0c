#include "epmoe/model/decoder.hpp"

#include "epmoe/base/error.hpp"

namespace epmoe {
namespace {

uint64_t floats(const std::vector<float>& v) { return v.size(); }

void need(const std::vector<float>& v, uint64_t want, const char* source, const char* part, int layer) {
    if (v.size() != want)
        fail(source, ": decoder part ", part, layer >= 0 ? cat(" of layer ", layer) : std::string(), " holds ",
             v.size(), " values, expected ", want);
}

void need_optional(const std::vector<float>& v, uint64_t want, const char* source, const char* part, int layer) {
    if (!v.empty()) need(v, want, source, part, layer);
}

}  // namespace

uint64_t DecoderWeights::bytes() const {
    uint64_t n = floats(embed) + floats(final_norm) + floats(lm_head);
    uint64_t packed = 0;
    for (const AttentionWeights& a : layers) {
        for (const auto* v :
             {&a.input_norm, &a.wq, &a.wk, &a.wv, &a.wo, &a.bq, &a.bk, &a.bv, &a.bo, &a.q_norm, &a.k_norm})
            n += floats(*v);
        if (a.packed) packed += a.packed->bytes();
    }
    return n * sizeof(float) + packed;
}

void check_decoder(const DecoderWeights& w, const ModelShape& shape, const char* source) {
    const DecoderShape& s = shape.decoder;
    const uint64_t d = shape.d_model, v = s.vocab_size, q = uint64_t{1} * s.num_heads * s.head_dim,
                   kv = uint64_t{1} * s.num_kv_heads * s.head_dim;
    need(w.embed, v * d, source, "embed", -1);
    need(w.final_norm, d, source, "final_norm", -1);
    if (!s.tie_word_embeddings) need(w.lm_head, v * d, source, "lm_head", -1);
    if (static_cast<int>(w.layers.size()) != shape.num_layers)
        fail(source, ": ", w.layers.size(), " attention layers for ", shape.num_layers, " layers");
    for (int l = 0; l < shape.num_layers; ++l) {
        const AttentionWeights& a = w.layers[l];
        need(a.input_norm, d, source, "input_norm", l);
        need(a.wq, q * d, source, "q", l);
        need(a.wk, kv * d, source, "k", l);
        need(a.wv, kv * d, source, "v", l);
        need(a.wo, d * q, source, "o", l);
        if (a.bq.empty() != a.bk.empty() || a.bq.empty() != a.bv.empty())
            fail(source, ": layer ", l, " has biases on some of q, k, v but not all");
        need_optional(a.bq, q, source, "q bias", l);
        need_optional(a.bk, kv, source, "k bias", l);
        need_optional(a.bv, kv, source, "v bias", l);
        need_optional(a.bo, d, source, "o bias", l);
        const uint64_t qn = s.qk_norm == QkNorm::kWhole ? q : s.head_dim,
                       kn = s.qk_norm == QkNorm::kWhole ? kv : s.head_dim;
        if (s.qk_norm == QkNorm::kNone) {
            if (!a.q_norm.empty() || !a.k_norm.empty())
                fail(source, ": layer ", l, " has q/k norms its family has not");
        } else {
            need(a.q_norm, qn, source, "q_norm", l);
            need(a.k_norm, kn, source, "k_norm", l);
        }
    }
}

}  // namespace epmoe
