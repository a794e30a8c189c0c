#include "decoder_reference.hpp"

#include <algorithm>
#include <cmath>
#include <span>

#include "epmoe/base/error.hpp"
#include "moe_reference.hpp"

namespace epmoe::reference {
namespace {

using Rows = std::vector<std::vector<double>>;  // [num_rows][width]

// In place over x [n]: x / sqrt(mean(x^2) + eps) * g, g [n].
void decoder_rms_norm(double* x, int n, const float* g, double eps) {
    double ms = 0;
    for (int i = 0; i < n; ++i) ms += x[i] * x[i];
    const double inv = 1.0 / std::sqrt(ms / n + eps);
    for (int i = 0; i < n; ++i) x[i] = x[i] * inv * g[i];
}

// y = W x + b: w [out, in] (a PyTorch Linear's weight), b [out] or empty, x [in]. Returns [out].
std::vector<double> matvec(const std::vector<float>& w, const std::vector<float>& b, int out, int in,
                           const std::vector<double>& x) {
    if (w.size() != static_cast<size_t>(out) * in || (!b.empty() && b.size() != static_cast<size_t>(out)))
        fail("reference: a ", out, " x ", in, " projection holds ", w.size(), " weights and ", b.size(), " biases");
    std::vector<double> y(out);
    for (int o = 0; o < out; ++o) {
        double acc = b.empty() ? 0.0 : b[o];
        for (int i = 0; i < in; ++i) acc += static_cast<double>(w[static_cast<size_t>(o) * in + i]) * x[i];
        y[o] = acc;
    }
    return y;
}

// RoPE of one head v [head_dim] at position pos, HF's rotate-half layout: v * cos + rotate_half(v) * sin with
// rotate_half(v) = cat(-v2, v1); pair (j, j + head_dim/2) turns by pos * theta^(-2j / head_dim).
void rope(double* v, int head_dim, int64_t pos, double theta) {
    const int half = head_dim / 2;
    for (int j = 0; j < half; ++j) {
        const double angle = static_cast<double>(pos) * std::pow(theta, -2.0 * j / head_dim);
        const double c = std::cos(angle), s = std::sin(angle), a = v[j], b = v[j + half];
        v[j] = a * c - b * s;
        v[j + half] = b * c + a * s;
    }
}

// Splits v [num_heads * head_dim] into heads: per-head norm (QkNorm::kPerHead, g [head_dim]), then RoPE.
void heads_norm_rope(std::vector<double>& v, int num_heads, const DecoderShape& s, const std::vector<float>& g,
                     double eps, int64_t pos) {
    for (int h = 0; h < num_heads; ++h) {
        double* head = &v[static_cast<size_t>(h) * s.head_dim];
        if (s.qk_norm == QkNorm::kPerHead) decoder_rms_norm(head, s.head_dim, g.data(), eps);
        rope(head, s.head_dim, pos, s.rope_theta);
    }
}

struct Qkv {
    Rows q, k, v;  // [S][q_dim], [S][kv_dim], [S][kv_dim]; q and k after their norms and RoPE
};

// The queries, keys and values of every position of x [S][d_model] (already RMSNorm'ed with input_norm).
Qkv project(const AttentionWeights& w, const DecoderShape& s, int d_model, double eps, const Rows& x) {
    const int q_dim = s.num_heads * s.head_dim, kv_dim = s.num_kv_heads * s.head_dim;
    Qkv out;
    for (size_t t = 0; t < x.size(); ++t) {
        std::vector<double> q = matvec(w.wq, w.bq, q_dim, d_model, x[t]);
        std::vector<double> k = matvec(w.wk, w.bk, kv_dim, d_model, x[t]);
        if (s.qk_norm == QkNorm::kWhole) {  // OLMoE: over the whole projection, before the split into heads
            decoder_rms_norm(q.data(), q_dim, w.q_norm.data(), eps);
            decoder_rms_norm(k.data(), kv_dim, w.k_norm.data(), eps);
        }
        heads_norm_rope(q, s.num_heads, s, w.q_norm, eps, static_cast<int64_t>(t));
        heads_norm_rope(k, s.num_kv_heads, s, w.k_norm, eps, static_cast<int64_t>(t));
        out.q.push_back(std::move(q));
        out.k.push_back(std::move(k));
        out.v.push_back(matvec(w.wv, w.bv, kv_dim, d_model, x[t]));
    }
    return out;
}

// Causal softmax attention of every query head, before o_proj: [S][q_dim]. Query i sees keys j <= i, and
// with sliding_window w > 0 only those with i - j < w; query head h reads kv head h / (num_heads / num_kv_heads).
Rows attend(const DecoderShape& s, const Qkv& qkv) {
    const int hd = s.head_dim, group = s.num_heads / s.num_kv_heads;
    const size_t num_tokens = qkv.q.size();
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    Rows context(num_tokens, std::vector<double>(static_cast<size_t>(s.num_heads) * hd, 0.0));
    for (size_t i = 0; i < num_tokens; ++i) {
        const size_t first = s.sliding_window > 0 && i + 1 > static_cast<size_t>(s.sliding_window)
                                 ? i + 1 - static_cast<size_t>(s.sliding_window)
                                 : 0;
        for (int h = 0; h < s.num_heads; ++h) {
            const size_t qo = static_cast<size_t>(h) * hd, ko = static_cast<size_t>(h / group) * hd;
            std::vector<double> p(i + 1, 0.0);  // [i + 1] attention weights of keys first .. i
            double mx = -1e300, sum = 0;
            for (size_t j = first; j <= i; ++j) {
                double dot = 0;
                for (int c = 0; c < hd; ++c) dot += qkv.q[i][qo + c] * qkv.k[j][ko + c];
                p[j] = dot * scale;
                mx = std::max(mx, p[j]);
            }
            for (size_t j = first; j <= i; ++j) sum += p[j] = std::exp(p[j] - mx);
            for (size_t j = first; j <= i; ++j)
                for (int c = 0; c < hd; ++c) context[i][qo + c] += p[j] / sum * qkv.v[j][ko + c];
        }
    }
    return context;
}

// One layer's attention block on the residual stream h [S][d_model]: h += o(attn(RMSNorm(h))) + bo.
void attention_block(const AttentionWeights& w, const DecoderShape& s, int d_model, double eps, Rows& h) {
    Rows x = h;  // [S][d_model]
    for (std::vector<double>& row : x) decoder_rms_norm(row.data(), d_model, w.input_norm.data(), eps);
    const Rows context = attend(s, project(w, s, d_model, eps, x));
    for (size_t t = 0; t < h.size(); ++t) {
        const std::vector<double> o = matvec(w.wo, w.bo, d_model, s.num_heads * s.head_dim, context[t]);
        for (int i = 0; i < d_model; ++i) h[t][i] += o[i];
    }
}

// Fails unless model and decoder fit each other and the norms the reference reads have their sizes.
void check_inputs(const Model& model, const DecoderWeights& decoder) {
    const ModelShape& s = model.shape;
    const DecoderShape& ds = s.decoder;
    const size_t d = static_cast<size_t>(s.d_model), layers = static_cast<size_t>(s.num_layers);
    if (model.layers.size() != layers || decoder.layers.size() != layers)
        fail("reference: ", model.layers.size(), " MoE layers and ", decoder.layers.size(), " attention layers, not ",
             layers);
    if (ds.num_kv_heads <= 0 || ds.num_heads % ds.num_kv_heads != 0 || ds.head_dim % 2 != 0)
        fail("reference: bad heads ", ds.num_heads, " / kv heads ", ds.num_kv_heads, " / head_dim ", ds.head_dim);
    const size_t table = static_cast<size_t>(ds.vocab_size) * d;
    if (decoder.embed.size() != table || decoder.head().size() != table || decoder.final_norm.size() != d)
        fail("reference: embeddings, LM head or final norm do not match vocab ", ds.vocab_size, " x d_model ", d);
    const size_t q_norm = ds.qk_norm == QkNorm::kWhole ? static_cast<size_t>(ds.num_heads) * ds.head_dim
                                                       : static_cast<size_t>(ds.head_dim);
    for (size_t l = 0; l < layers; ++l) {
        const AttentionWeights& a = decoder.layers[l];
        if (a.input_norm.size() != d || model.layers[l].norm.size() != d)
            fail("reference: layer ", l, "'s input or post-attention norm is not [", d, "]");
        if (ds.qk_norm != QkNorm::kNone && a.q_norm.size() != q_norm)
            fail("reference: layer ", l, "'s q_norm holds ", a.q_norm.size(), " values, not ", q_norm);
    }
}

}  // namespace

std::vector<float> decoder_logits(const Model& model, const DecoderWeights& decoder, const std::vector<int32_t>& ids) {
    check_inputs(model, decoder);
    const ModelShape& s = model.shape;
    const int d = s.d_model, vocab = s.decoder.vocab_size;
    Rows h(ids.size(), std::vector<double>(d));  // [S][d_model] the residual stream
    for (size_t t = 0; t < ids.size(); ++t) {
        if (ids[t] < 0 || ids[t] >= vocab) fail("reference: token ", ids[t], " at ", t, " outside vocab ", vocab);
        for (int i = 0; i < d; ++i) h[t][i] = decoder.embed[static_cast<size_t>(ids[t]) * d + i];
    }
    for (int l = 0; l < s.num_layers; ++l) {
        attention_block(decoder.layers[l], s.decoder, d, s.rms_norm_eps, h);
        for (std::vector<double>& row : h) {
            std::vector<double> x = row;  // [d_model]
            decoder_rms_norm(x.data(), d, model.layers[l].norm.data(), s.rms_norm_eps);
            const std::vector<double> y = layer_mlp(model, l, x);
            for (int i = 0; i < d; ++i) row[i] += y[i];
        }
    }
    const std::span<const float> head = decoder.head();  // [vocab, d_model]
    std::vector<float> logits(ids.size() * vocab);       // [S, vocab]
    for (size_t t = 0; t < ids.size(); ++t) {
        decoder_rms_norm(h[t].data(), d, decoder.final_norm.data(), s.rms_norm_eps);
        for (int v = 0; v < vocab; ++v) {
            double z = 0;
            for (int i = 0; i < d; ++i) z += static_cast<double>(head[static_cast<size_t>(v) * d + i]) * h[t][i];
            logits[t * vocab + v] = static_cast<float>(z);
        }
    }
    return logits;
}

double mean_nll(const std::vector<float>& logits, const std::vector<int32_t>& ids, int vocab) {
    EPMOE_ASSERT(ids.size() >= 2 && logits.size() == ids.size() * vocab);
    double total = 0;
    for (size_t t = 0; t + 1 < ids.size(); ++t) {
        const float* row = &logits[t * vocab];
        const double mx = *std::max_element(row, row + vocab);
        double sum = 0;
        for (int v = 0; v < vocab; ++v) sum += std::exp(row[v] - mx);
        total += mx + std::log(sum) - row[ids[t + 1]];
    }
    return total / static_cast<double>(ids.size() - 1);
}

std::vector<int32_t> greedy_generate(const Model& model, const DecoderWeights& decoder, std::vector<int32_t> prompt,
                                     int num_new) {
    EPMOE_ASSERT(!prompt.empty());
    const int vocab = model.shape.decoder.vocab_size;
    std::vector<int32_t> out;
    for (int n = 0; n < num_new; ++n) {
        const std::vector<float> logits = decoder_logits(model, decoder, prompt);
        const float* last = &logits[(prompt.size() - 1) * vocab];
        const auto best = static_cast<int32_t>(std::max_element(last, last + vocab) - last);  // first of ties
        prompt.push_back(best);
        out.push_back(best);
    }
    return out;
}

}  // namespace epmoe::reference
