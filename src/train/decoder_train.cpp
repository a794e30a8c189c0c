// The whole decoder's training step (decoder_train.hpp): activations kept per layer, the backward the forward
// reversed. Each rank runs its sequences' attention alone and all its rows through the MoE blocks together.
#include "epmoe/train/decoder_train.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include "epmoe/base/error.hpp"
#include "epmoe/moe/train.hpp"
#include "epmoe/ops/attention_backward.hpp"
#include "epmoe/ops/gate.hpp"
#include "epmoe/ops/loss.hpp"
#include "epmoe/ops/norm.hpp"
#include "epmoe/train/aux_loss.hpp"

namespace epmoe {
namespace {

void zero(std::vector<float>& v) { std::fill(v.begin(), v.end(), 0.0f); }
void zero(ExpertWeights& w) { zero(w.w13), zero(w.w2); }

ExpertWeights zeros_like(const ExpertWeights& w) {
    ExpertWeights g;
    g.w13.assign(w.w13.size(), 0.0f);
    g.w2.assign(w.w2.size(), 0.0f);
    return g;
}

}  // namespace

// What one layer keeps of the forward for the backward (a member of DecoderTrainer::Impl: not in the anonymous
// namespace).
struct LayerSaved {
    std::vector<float> h_in, x1, h_mid, x2;  // [N, d]: input, its norm, after attention, its norm
    std::vector<AttentionSaved> attention;   // [sequences]
    MoeBlockSaved moe;                       // an MoE layer
    SharedExpertSaved shared;                // with a shared expert
    std::vector<float> dense_h13;            // a dense layer: its MLP's W1 x | W3 x
};

ModelGrads make_grads(const Model& model, const DecoderWeights& decoder) {
    ModelGrads g;
    g.model.shape = model.shape;
    g.model.kernel = nullptr;
    for (const MoeLayer& l : model.layers) {
        MoeLayer& o = g.model.layers.emplace_back();
        o.gate.assign(l.gate.size(), 0.0f);
        o.norm.assign(l.norm.size(), 0.0f);
        for (const auto& [e, w] : l.experts) o.experts.emplace(e, zeros_like(w));
        if (l.dense) o.dense = DenseMlp{l.dense->d_ff, zeros_like(l.dense->w)};
        if (l.shared_expert) o.shared_expert = DenseMlp{l.shared_expert->d_ff, zeros_like(l.shared_expert->w)};
        o.shared_expert_gate.assign(l.shared_expert_gate.size(), 0.0f);
    }
    g.decoder = decoder;
    zero_grads(g);
    return g;
}

void zero_grads(ModelGrads& g) {
    for (MoeLayer& l : g.model.layers) {
        zero(l.gate), zero(l.norm), zero(l.shared_expert_gate);
        for (auto& [e, w] : l.experts) zero(w);
        if (l.dense) zero(l.dense->w);
        if (l.shared_expert) zero(l.shared_expert->w);
    }
    DecoderWeights& d = g.decoder;
    zero(d.embed), zero(d.final_norm), zero(d.lm_head);
    for (AttentionWeights& a : d.layers)
        for (auto* v : {&a.input_norm, &a.wq, &a.wk, &a.wv, &a.wo, &a.bq, &a.bk, &a.bv, &a.bo, &a.q_norm, &a.k_norm})
            zero(*v);
}

struct DecoderTrainer::Impl {
    const Model& model;
    const DecoderWeights& decoder;
    const Placement& placement;
    DispatchOptions options;
    double aux_coef, z_coef;
    std::vector<LayerSaved> layers;
    std::vector<float> biases;                 // [L, E] or empty
    std::vector<float> h, xf, logits, dh, dx;  // [N, d] / [N, V]
    std::vector<int32_t> ids, targets;         // [N]
    std::vector<int64_t> seq_start;            // [sequences + 1] row offsets
    int64_t first_token = 0, step_tokens = 0;
    DispatchBuffers buf;
    std::vector<float> scratch, tmp;

    size_t d() const { return static_cast<size_t>(model.shape.d_model); }
    std::span<float> rows(std::vector<float>& v, size_t s) {
        return std::span<float>(v).subspan(static_cast<size_t>(seq_start[s]) * d(),
                                           static_cast<size_t>(seq_start[s + 1] - seq_start[s]) * d());
    }
    std::span<const float> rows(const std::vector<float>& v, size_t s) const {
        return std::span<const float>(v).subspan(static_cast<size_t>(seq_start[s]) * d(),
                                                 static_cast<size_t>(seq_start[s + 1] - seq_start[s]) * d());
    }

    void forward_layer(const mpi::Comm& comm, int l, TrainTimes& times);
    double head_forward_backward(int64_t n, double scale, std::span<float> dhead, const Progress& progress,
                                 TrainTimes& times);
    void backward_layer(const mpi::Comm& comm, int l, const AuxLoss& aux, ModelGrads& grads, TrainTimes& times);
};

DecoderTrainer::DecoderTrainer(const Model& model, const DecoderWeights& decoder, const Placement& placement,
                               const DispatchOptions& options, double aux_coef, double z_coef)
    : impl_(new Impl{model, decoder, placement, options, aux_coef, z_coef, {}, {}, {}, {}, {},
                     {},    {},      {},        {},      {},       0,      0,  {}, {}, {}}) {
    impl_->layers.resize(model.layers.size());
}

DecoderTrainer::~DecoderTrainer() = default;

void DecoderTrainer::set_progress(Progress progress) { progress_ = std::move(progress); }

void DecoderTrainer::set_biases(std::span<const float> biases) {
    EPMOE_ASSERT(biases.empty() ||
                 biases.size() == static_cast<size_t>(impl_->model.shape.num_layers) * impl_->model.shape.num_experts);
    impl_->biases.assign(biases.begin(), biases.end());
}

void DecoderTrainer::Impl::forward_layer(const mpi::Comm& comm, int l, TrainTimes& times) {
    const ModelShape& s = model.shape;
    const MoeLayer& layer = model.layers[static_cast<size_t>(l)];
    const AttentionWeights& a = decoder.layers[static_cast<size_t>(l)];
    LayerSaved& sv = layers[static_cast<size_t>(l)];
    sv.h_in = h;
    sv.x1.resize(h.size());
    rms_norm(h, a.input_norm, s.rms_norm_eps, sv.x1);
    sv.attention.resize(seq_start.size() - 1);
    tmp.resize(h.size());
    for (size_t q = 0; q + 1 < seq_start.size(); ++q)
        attention_forward_train(a, s.decoder, s.d_model, s.rms_norm_eps, rows(sv.x1, q),
                                seq_start[q + 1] - seq_start[q], rows(tmp, q), sv.attention[q]);
    for (size_t i = 0; i < h.size(); ++i) h[i] += tmp[i];
    sv.h_mid = h;
    sv.x2.resize(h.size());
    rms_norm(h, layer.norm, s.rms_norm_eps, sv.x2);
    std::fill(tmp.begin(), tmp.end(), 0.0f);
    if (layer.dense) {
        expert_forward_train(layer.dense->w, s.d_model, layer.dense->d_ff, sv.x2, tmp, sv.dense_h13, scratch);
    } else {
        const std::span<const float> bias = biases.empty() ? std::span<const float>()
                                                           : std::span<const float>(biases).subspan(
                                                                 static_cast<size_t>(l) * s.num_experts, s.num_experts);
        moe_block_forward_train(comm, layer.experts, s, placement, layer.gate, sv.x2, bias, first_token, step_tokens,
                                options, tmp, sv.moe, times.moe, buf);
        if (layer.shared_expert)
            add_shared_expert_train(*layer.shared_expert, layer.shared_expert_gate, s.d_model, sv.x2, tmp, sv.shared,
                                    scratch);
    }
    for (size_t i = 0; i < h.size(); ++i) h[i] += tmp[i];
}

// The LM head with its loss, kHeadRows rows at a time: a chunk's logits, their cross-entropy and its gradient in
// place, then the chunk's dx and its share of dW_head. Only a chunk's [rows, vocab] logits exist at once (a
// 151,936-entry vocabulary at 4,096 tokens a rank would hold 2.5 GB of FP32 logits; 512 rows, 311 MB), and the
// step takes no longer (AMD EPYC Zen 4, one thread: 2,048 rows of the head, vocab 8,192 and 32,000, 512-row chunks
// within 1 % of one 2,048-row pass). The head's GEMMs and the loss count as forward, its backward GEMMs as
// backward. Returns the summed loss of this rank's kept targets.
double DecoderTrainer::Impl::head_forward_backward(int64_t n, double scale, std::span<float> dhead,
                                                   const Progress& progress, TrainTimes& times) {
    constexpr int64_t kHeadRows = 512;
    const int d_model = model.shape.d_model, vocab = model.shape.decoder.vocab_size;
    const std::span<const float> w = decoder.head();
    logits.resize(static_cast<size_t>(std::min(n, kHeadRows)) * static_cast<size_t>(vocab));
    double loss_sum = 0;
    for (int64_t r0 = 0; r0 < n; r0 += kHeadRows) {
        const int64_t rows = std::min(kHeadRows, n - r0);
        if (progress)
            progress("LM head, chunk", static_cast<int>(r0 / kHeadRows),
                     static_cast<int>((n + kHeadRows - 1) / kHeadRows));
        const size_t x0 = static_cast<size_t>(r0) * d(), xn = static_cast<size_t>(rows) * d();
        const std::span<float> chunk(logits.data(), static_cast<size_t>(rows) * static_cast<size_t>(vocab));
        const std::span<const int32_t> chunk_targets(targets.data() + r0, static_cast<size_t>(rows));
        const double t0 = mpi::wtime();
        linear(std::span<const float>(xf).subspan(x0, xn), rows, d_model, w, {}, vocab, chunk);
        loss_sum += cross_entropy_forward_backward(chunk, vocab, chunk_targets, scale, chunk).sum;  // in place
        const double t1 = mpi::wtime();
        linear_backward(std::span<const float>(xf).subspan(x0, xn), rows, d_model, w, vocab, chunk,
                        std::span<float>(dx).subspan(x0, xn), dhead, {});
        times.forward += t1 - t0;
        times.backward += mpi::wtime() - t1;
    }
    return loss_sum;
}

void DecoderTrainer::Impl::backward_layer(const mpi::Comm& comm, int l, const AuxLoss& aux, ModelGrads& grads,
                                          TrainTimes& times) {
    const ModelShape& s = model.shape;
    const MoeLayer& layer = model.layers[static_cast<size_t>(l)];
    const AttentionWeights& a = decoder.layers[static_cast<size_t>(l)];
    LayerSaved& sv = layers[static_cast<size_t>(l)];
    MoeLayer& g = grads.model.layers[static_cast<size_t>(l)];
    AttentionWeights& ga = grads.decoder.layers[static_cast<size_t>(l)];
    dx.assign(dh.size(), 0.0f);  // d x2
    if (layer.dense) {
        expert_backward(layer.dense->w, s.d_model, layer.dense->d_ff, sv.x2, sv.dense_h13, dh, dx, g.dense->w, scratch);
    } else {
        std::vector<float> dlogits(sv.moe.logits.size());
        moe_block_backward(comm, layer.experts, s, placement, sv.x2, sv.moe, dh, first_token, step_tokens, options, dx,
                           g.experts, dlogits, times.moe, buf);
        aux.add_gradient(sv.moe, aux_coef, z_coef, dlogits);
        gate_logits_backward(sv.x2, layer.gate, s.d_model, s.num_experts, dlogits, dx, g.gate);
        if (layer.shared_expert)
            shared_expert_backward(*layer.shared_expert, layer.shared_expert_gate, s.d_model, sv.x2, sv.shared, dh, dx,
                                   g.shared_expert->w, g.shared_expert_gate, scratch);
    }
    rms_norm_backward(sv.h_mid, layer.norm, s.rms_norm_eps, dx, dh, g.norm);  // dh: the residual's, plus this
    dx.assign(dh.size(), 0.0f);                                               // d x1
    for (size_t q = 0; q + 1 < seq_start.size(); ++q)
        attention_backward(a, s.decoder, s.d_model, s.rms_norm_eps, rows(sv.x1, q), sv.attention[q], rows(dh, q),
                           rows(dx, q), ga);
    rms_norm_backward(sv.h_in, a.input_norm, s.rms_norm_eps, dx, dh, ga.input_norm);
}

TrainLosses DecoderTrainer::step(const mpi::Comm& comm, std::span<const TrainSequence> batch, ModelGrads& grads) {
    return step(comm, comm, batch, grads);
}

TrainLosses DecoderTrainer::step(const mpi::Comm& comm, const mpi::Comm& world, std::span<const TrainSequence> batch,
                                 ModelGrads& grads) {
    Impl& m = *impl_;  // comm: the group's (token exchange, capacity); world: the global batch's (losses)
    const ModelShape& s = m.model.shape;
    const double t0 = mpi::wtime();
    m.ids.clear(), m.targets.clear(), m.seq_start.assign(1, 0);
    for (const TrainSequence& q : batch) {
        EPMOE_ASSERT(q.ids.size() == q.targets.size());
        m.ids.insert(m.ids.end(), q.ids.begin(), q.ids.end());
        m.targets.insert(m.targets.end(), q.targets.begin(), q.targets.end());
        m.seq_start.push_back(static_cast<int64_t>(m.ids.size()));
    }
    const int64_t n = static_cast<int64_t>(m.ids.size());
    m.first_token = mpi::exscan_sum<int64_t>(comm, std::span<const int64_t>(&n, 1))[0];
    m.step_tokens = mpi::allreduce_one<int64_t>(comm, n, mpi::Op::kSum);
    const int64_t global_tokens =
        &world == &comm ? m.step_tokens : mpi::allreduce_one<int64_t>(world, n, mpi::Op::kSum);
    m.h.resize(static_cast<size_t>(n) * m.d());
    embed_tokens(m.decoder.embed, s.d_model, m.ids, m.h);
    const auto report = [&](const char* where, int l) { progress_ ? progress_(where, l, s.num_layers) : void(); };
    for (int l = 0; l < s.num_layers; ++l) report("forward, layer", l), m.forward_layer(comm, l, times_);
    m.xf.resize(m.h.size());
    rms_norm(m.h, m.decoder.final_norm, s.rms_norm_eps, m.xf);
    // The loss's gradient per kept target (1 / the global count), known from the targets before the logits.
    const int64_t kept = std::count_if(m.targets.begin(), m.targets.end(), [](int32_t t) { return t != kIgnoreIndex; });
    const int64_t global_kept = mpi::allreduce_one<int64_t>(world, kept, mpi::Op::kSum);
    m.dx.assign(m.h.size(), 0.0f);
    std::vector<float>& dhead = m.decoder.lm_head.empty() ? grads.decoder.embed : grads.decoder.lm_head;
    times_.forward += mpi::wtime() - t0;
    double loss_sum = m.head_forward_backward(n, global_kept > 0 ? 1.0 / static_cast<double>(global_kept) : 0.0, dhead,
                                              progress_, times_);
    const double t_aux = mpi::wtime();
    mpi::allreduce<double>(world, std::span<double>(&loss_sum, 1), mpi::Op::kSum);
    std::vector<const MoeBlockSaved*> moe;
    for (size_t l = 0; l < m.layers.size(); ++l)
        if (!m.model.layers[l].dense) moe.push_back(&m.layers[l].moe);
    const AuxLoss aux(world, moe, s.num_experts, s.top_k, global_tokens);
    const double t1 = mpi::wtime();
    times_.forward += t1 - t_aux;

    m.dh.assign(m.h.size(), 0.0f);
    rms_norm_backward(m.h, m.decoder.final_norm, s.rms_norm_eps, m.dx, m.dh, grads.decoder.final_norm);
    for (int l = s.num_layers - 1; l >= 0; --l)
        report("backward, layer", l), m.backward_layer(comm, l, aux, grads, times_);
    embed_tokens_backward(m.ids, s.d_model, m.dh, grads.decoder.embed);
    times_.backward += mpi::wtime() - t1;
    TrainLosses out;
    out.lm = global_kept > 0 ? loss_sum / static_cast<double>(global_kept) : NAN;
    out.aux = aux.value();
    out.targets = global_kept;
    out.tokens = global_tokens;
    out.drop_rate = aux.drop_rate();
    out.z = aux.z_value();
    out.gate_entropy = aux.gate_entropy();
    out.load_cv = aux.load_cv();
    out.expert_load.assign(aux.layer_load().begin(), aux.layer_load().end());
    return out;
}

}  // namespace epmoe
