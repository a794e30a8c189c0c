#include "epmoe/model/decoder_forward.hpp"

#include "epmoe/base/error.hpp"
#include "epmoe/ops/norm.hpp"

namespace epmoe {
namespace {

int64_t total_tokens(std::span<const SequenceChunk> chunks) {
    int64_t n = 0;
    for (const SequenceChunk& c : chunks) n += static_cast<int64_t>(c.ids.size());
    return n;
}

// FLOPs of one layer's attention on a chunk of n tokens after `past` cached ones: the four projections, the
// scores and the context over the keys each query sees (causal; a sliding window bounds them).
double attention_flops(const ModelShape& s, int64_t n, int64_t past) {
    const DecoderShape& d = s.decoder;
    const double q = 1.0 * d.num_heads * d.head_dim, kv = 1.0 * d.num_kv_heads * d.head_dim;
    double keys = 0;
    for (int64_t i = 0; i < n; ++i) {
        const double seen = static_cast<double>(past + i + 1);
        keys += d.sliding_window > 0 ? std::min(seen, static_cast<double>(d.sliding_window)) : seen;
    }
    return 2.0 * n * s.d_model * (2 * q + 2 * kv) + 4.0 * keys * q;
}

}  // namespace

SequenceCache make_sequence_cache(int num_layers) {
    SequenceCache cache;
    cache.layers.resize(static_cast<size_t>(num_layers));
    return cache;
}

DecoderForward::DecoderForward(const Model& model, const DecoderWeights& decoder, Forward& moe,
                               const PackedLinear* head, ShardedHead* sharded)
    : model_(model), decoder_(decoder), moe_(moe), head_(head), sharded_(sharded) {
    EPMOE_ASSERT(decoder.layers.size() == model.layers.size());
}

StepResult DecoderForward::step(const mpi::Comm& comm, std::span<const SequenceChunk> chunks, LogitRows rows,
                                int64_t first_token, int64_t step_tokens, std::span<const float> biases,
                                std::vector<float>& logits) {
    const ModelShape& s = model_.shape;
    const size_t d = static_cast<size_t>(s.d_model);
    const int64_t n = total_tokens(chunks);
    EPMOE_ASSERT(biases.empty() || biases.size() == static_cast<size_t>(s.num_layers) * s.num_experts);
    last_flops_ = 0;
    double t0 = mpi::wtime();
    h_.resize(static_cast<size_t>(n) * d);
    size_t row = 0;
    for (const SequenceChunk& c : chunks) {
        EPMOE_ASSERT(c.cache != nullptr && c.cache->layers.size() == model_.layers.size());
        embed_tokens(decoder_.embed, s.d_model, c.ids, std::span<float>(h_).subspan(row * d, c.ids.size() * d));
        row += c.ids.size();
    }
    times_.embed += mpi::wtime() - t0;
    StepResult result;
    for (int l = 0; l < s.num_layers; ++l) {
        attention_layer(l, chunks);
        auto bias = biases.empty() ? std::span<const float>() : biases.subspan(l * s.num_experts, s.num_experts);
        moe_.layer(comm, l, h_, first_token, step_tokens, bias, result);
    }
    lm_head(comm, chunks, rows, logits);
    return result;
}

void DecoderForward::attention_layer(int l, std::span<const SequenceChunk> chunks) {
    const ModelShape& s = model_.shape;
    const AttentionWeights& w = decoder_.layers[static_cast<size_t>(l)];
    const double t0 = mpi::wtime();
    std::vector<int64_t> lengths;
    std::vector<KvCache*> caches;
    for (const SequenceChunk& c : chunks) {
        KvCache& cache = c.cache->layers[static_cast<size_t>(l)];
        last_flops_ += attention_flops(s, static_cast<int64_t>(c.ids.size()), cache.length);
        lengths.push_back(static_cast<int64_t>(c.ids.size()));
        caches.push_back(&cache);
    }
    x_.resize(h_.size());
    out_.resize(h_.size());
    rms_norm(h_, w.input_norm, s.rms_norm_eps, x_);
    attention_sequences(w, s.decoder, s.d_model, s.rms_norm_eps, x_, lengths, caches, out_, scratch_);
    for (size_t i = 0; i < h_.size(); ++i) h_[i] += out_[i];
    times_.attention += mpi::wtime() - t0;
}

void DecoderForward::lm_head(const mpi::Comm& comm, std::span<const SequenceChunk> chunks, LogitRows rows,
                             std::vector<float>& logits) {
    const ModelShape& s = model_.shape;
    const size_t d = static_cast<size_t>(s.d_model);
    const int vocab = s.decoder.vocab_size;
    const double t0 = mpi::wtime();
    // The rows whose logits are wanted, after the final norm.
    x_.clear();
    size_t row = 0;
    for (const SequenceChunk& c : chunks) {
        const size_t n = c.ids.size();
        const size_t first = rows == LogitRows::kAll ? row : row + n - 1;
        if (n > 0)
            x_.insert(x_.end(), h_.begin() + static_cast<std::ptrdiff_t>(first * d),
                      h_.begin() + static_cast<std::ptrdiff_t>((row + n) * d));
        row += n;
    }
    const int64_t m = static_cast<int64_t>(x_.size() / d);
    out_.resize(x_.size());
    rms_norm(x_, decoder_.final_norm, s.rms_norm_eps, out_);
    logits.resize(static_cast<size_t>(m) * static_cast<size_t>(vocab));
    if (sharded_)
        sharded_->run(comm, out_, m, logits);  // summed over ranks, the same FLOPs as below
    else if (head_)
        head_->run(out_, m, logits);
    else
        linear(out_, m, s.d_model, decoder_.head(), {}, vocab, logits);
    last_flops_ += 2.0 * static_cast<double>(m) * s.d_model * vocab;
    times_.lm_head += mpi::wtime() - t0;
}

}  // namespace epmoe
