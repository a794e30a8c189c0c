// Checkpoint::load: converts to float only the tensors a rank uses (norm, gate, shared and dense parts, and its
// own experts: whole tensors, or its rows of transformers 5's fused ones), so a rank's weight memory is its shard.
#include "checkpoint_internal.hpp"
#include "epmoe/base/error.hpp"

namespace epmoe {
namespace {

using checkpoint_detail::Matrix;
using checkpoint_detail::Mlp;
using checkpoint_detail::TensorSpec;

// Reads t (whole, or the rows of its expert when fused) into out, after what out already holds if append.
void read_spec(const Checkpoint& ck, const TensorSpec& t, std::vector<float>& out, bool append = false) {
    auto [file, info] = ck.find(t.name);
    const size_t offset = append ? out.size() : 0;
    out.resize(offset + static_cast<size_t>(t.numel()));
    std::span<float> dst(out.data() + offset, static_cast<size_t>(t.numel()));
    if (t.fused)
        file->read_rows_f32(*info, t.expert, t.expert + 1, dst);
    else
        file->read_f32(*info, dst);
}

// Builds one layer from its tensors in reading order: each MLP's matrices gather in `w` (w13 = [W1; W3]
// [2 d_ff, d_model], w2 [d_model, d_ff]); its W2, read last, hands it to the kernel and to its place.
void read_layer(const Checkpoint& ck, const std::vector<TensorSpec>& tensors, const MlpKernel& kernel, int d_model,
                MoeLayer& layer) {
    ExpertWeights w;
    for (const TensorSpec& t : tensors) {
        switch (t.matrix) {
            case Matrix::kNorm:
                read_spec(ck, t, layer.norm);
                break;
            case Matrix::kRouter:
                read_spec(ck, t, layer.gate);
                break;
            case Matrix::kSharedGate:
                read_spec(ck, t, layer.shared_expert_gate);
                break;
            case Matrix::kW1:
            case Matrix::kW13:
                read_spec(ck, t, w.w13);
                break;
            case Matrix::kW3:
                read_spec(ck, t, w.w13, /*append=*/true);
                break;
            case Matrix::kDecoder:  // decoder parts are read by load_decoder, never with a layer's MLP
                EPMOE_ASSERT(false);
                break;
            case Matrix::kW2: {
                read_spec(ck, t, w.w2);
                const int d_ff = static_cast<int>(t.shape.back());
                kernel.prepare(w, d_model, d_ff);
                if (t.mlp == Mlp::kExpert) layer.experts[t.expert] = std::move(w);
                if (t.mlp == Mlp::kDense) layer.dense = DenseMlp{d_ff, std::move(w)};
                if (t.mlp == Mlp::kShared) layer.shared_expert = DenseMlp{d_ff, std::move(w)};
                w = ExpertWeights{};
                break;
            }
        }
    }
}

}  // namespace

DecoderWeights Checkpoint::load_decoder(int first, int last) const {
    DecoderWeights w;
    w.layers.resize(static_cast<size_t>(last - first + 1));
    for (TensorSpec t : checkpoint_detail::decoder_tensors(info_, first, last)) {
        if (t.layer >= 0) t.layer -= first;  // the index into w.layers
        read_spec(*this, t, checkpoint_detail::decoder_slot(w, t));
    }
    return w;
}

Model Checkpoint::load(int first, int last, const std::function<bool(int)>& owns,
                       std::shared_ptr<const MlpKernel> kernel, const LoadProgress& progress) const {
    Model model;
    model.shape = info_.shape;
    model.shape.num_layers = last - first + 1;
    model.kernel = std::move(kernel);
    for (int l = first; l <= last; ++l) {
        read_layer(*this, checkpoint_detail::layer_tensors(info_, l, owns), *model.kernel, info_.shape.d_model,
                   model.layers.emplace_back());
        if (progress) progress(l - first + 1, last - first + 1);
    }
    return model;
}

}  // namespace epmoe
