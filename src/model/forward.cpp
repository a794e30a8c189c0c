#include "epmoe/model/forward.hpp"

#include "epmoe/ops/gate.hpp"
#include "epmoe/ops/norm.hpp"
#include "epmoe/ops/swiglu.hpp"

namespace epmoe {
namespace {

// A dense layer (Qwen2-MoE mlp_only_layers): every rank runs the MLP on its own tokens, h += mlp(x).
// No gate, no dispatch; the layer's load histogram is all zeros. x, h: [num_tokens, d_model].
LayerResult dense_layer(const MlpKernel& kernel, const DenseMlp& mlp, const ModelShape& s, std::span<const float> x,
                        std::span<float> h, DispatchBuffers& buf, StepResult& result) {
    const double t0 = mpi::wtime();
    buf.expert.out.resize(x.size());
    dense_forward(kernel, mlp, s.d_model, x, buf.expert.out, buf.expert.scratch);
    for (size_t i = 0; i < h.size(); ++i) h[i] += buf.expert.out[i];
    result.times.expert += mpi::wtime() - t0;
    result.expert_flops +=
        ModelShape::mlp_flops_per_token(s.d_model, mlp.d_ff) * static_cast<double>(x.size() / s.d_model);
    LayerResult layer;
    layer.expert_load.assign(s.num_experts, 0);
    return layer;
}

// Qwen2-MoE's shared expert on this rank's own tokens: out += sigmoid(gate · x) * shared(x).
void shared_expert(const MlpKernel& kernel, const MoeLayer& layer, const ModelShape& s, std::span<const float> x,
                   std::span<float> out, DispatchBuffers& buf, StepResult& result) {
    const double t0 = mpi::wtime();
    add_shared_expert(kernel, *layer.shared_expert, layer.shared_expert_gate, s.d_model, x, out, buf.mlp_out,
                      buf.expert.scratch);
    result.times.expert += mpi::wtime() - t0;
    result.expert_flops += ModelShape::mlp_flops_per_token(s.d_model, layer.shared_expert->d_ff) *
                           static_cast<double>(x.size() / s.d_model);
}

}  // namespace

Forward::Forward(const Model& model, const Placement& placement, double capacity_factor)
    : model_(model), placement_(placement) {
    options_.capacity_factor = capacity_factor;
}

StepResult Forward::step(const mpi::Comm& comm, std::span<float> h, int64_t first_token, int64_t step_tokens,
                         std::span<const float> biases) {
    const ModelShape& s = model_.shape;
    EPMOE_ASSERT(biases.empty() || biases.size() == static_cast<size_t>(s.num_layers) * s.num_experts);
    StepResult result;
    for (int l = 0; l < s.num_layers; ++l) {
        auto bias = biases.empty() ? std::span<const float>() : biases.subspan(l * s.num_experts, s.num_experts);
        layer(comm, l, h, first_token, step_tokens, bias, result);
    }
    return result;
}

void Forward::layer(const mpi::Comm& comm, int l, std::span<float> h, int64_t first_token, int64_t step_tokens,
                    std::span<const float> bias, StepResult& result) {
    const ModelShape& s = model_.shape;
    const size_t n = h.size() / s.d_model;
    const MoeLayer& layer = model_.layers[l];
    norm_.resize(h.size());
    moe_out_.resize(h.size());
    logits_.resize(n * s.num_experts);
    const double t0 = mpi::wtime();
    rms_norm(h, layer.norm, s.rms_norm_eps, norm_);
    if (layer.dense) {  // routing of a dense layer: top_k 0, no tokens
        result.times.gate += mpi::wtime() - t0;
        result.routing.emplace_back();
        result.layers.push_back(dense_layer(*model_.kernel, *layer.dense, s, norm_, h, buffers_, result));
        return;
    }
    gate_logits(norm_, layer.gate, s.d_model, s.num_experts, logits_);
    const bool corrected = adapt_ && adapt_->apply && !adapt_->layers[l].is_zero();
    if (adapt_) adapt_->keep(l, norm_, logits_, first_token);
    if (corrected) {  // --policy ttt: select with z' = z + (x A) B + b, weigh with z
        adapted_.assign(logits_.begin(), logits_.end());
        adapt_->layers[l].apply(norm_, adapted_);
    }
    result.routing.push_back(route(logits_, s.num_experts, s.top_k, bias, s.gate, s.norm_topk_prob,
                                   corrected ? std::span<const float>(adapted_) : std::span<const float>()));
    result.times.gate += mpi::wtime() - t0;
    result.layers.push_back(moe_layer_forward(comm, options_.share_work ? layer.host_experts : layer.experts,
                                              *model_.kernel, s, placement_, norm_, result.routing.back(), first_token,
                                              step_tokens, options_, moe_out_, result.times, buffers_));
    fidelity_.measure(comm, layer.experts, *model_.kernel, s, placement_, norm_, logits_, bias, corrected,
                      options_.capacity_factor > 0, result.routing.back(), result.layers.back().kept, moe_out_,
                      first_token, result.fidelity);
    result.expert_flops += s.expert_flops_per_token() * static_cast<double>(result.layers.back().rows_run);
    result.gate_flops += 2.0 * static_cast<double>(n) * s.d_model * s.num_experts;
    result.bytes_moved += result.layers.back().bytes_moved;
    if (layer.shared_expert) shared_expert(*model_.kernel, layer, s, norm_, moe_out_, buffers_, result);
    for (size_t i = 0; i < h.size(); ++i) h[i] += moe_out_[i];
}

}  // namespace epmoe
