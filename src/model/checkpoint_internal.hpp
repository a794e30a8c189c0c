// Pieces of the checkpoint loader shared by its source files (not a public API).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <fstream>

#include "epmoe/base/error.hpp"
#include "epmoe/base/json.hpp"
#include "epmoe/model/checkpoint.hpp"
#include "epmoe/model/checkpoint_write.hpp"
#include "epmoe/model/decoder.hpp"

namespace epmoe::checkpoint_detail {

// config.json's keys, each error naming the file and the key.
class HfConfig {
public:
    explicit HfConfig(const std::string& path) : path_(path) {
        std::ifstream in(path);
        if (!in) fail(path, ": cannot read config.json");
        try {
            json_ = Json::parse(in);
        } catch (const Json::parse_error& e) {
            fail(path, ": not valid JSON (", e.what(), ")");
        }
        if (!json_.is_object()) fail(path, ": config.json must be a JSON object");
    }
    bool has(const char* key) const { return json_.contains(key) && !json_.at(key).is_null(); }
    const Json& need(const char* key) const {
        if (!has(key)) fail(path_, ": missing key '", key, "'");
        return json_.at(key);
    }
    // A positive integer key (lo = 1) or a non-negative one (lo = 0).
    int integer(const char* key, int lo = 1) const {
        const Json& v = need(key);
        if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > (1 << 24))
            fail(path_, ": key '", key, "' = ", v.dump(), " must be an integer in [", lo, ", ", 1 << 24, "]");
        return v.get<int>();
    }
    int integer_or(const char* key, int fallback) const { return has(key) ? integer(key) : fallback; }
    bool boolean_or(const char* key, bool fallback) const {
        if (!has(key)) return fallback;
        const Json& v = json_.at(key);
        if (!v.is_boolean()) fail(path_, ": key '", key, "' = ", v.dump(), " must be true or false");
        return v.get<bool>();
    }
    double positive(const char* key) const {
        const Json& v = need(key);
        if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= 0)
            fail(path_, ": key '", key, "' = ", v.dump(), " must be a positive number");
        return v.get<double>();
    }
    std::vector<int> int_list_or_empty(const char* key) const {
        if (!has(key)) return {};
        const Json& v = json_.at(key);
        std::vector<int> out;
        if (v.is_array())
            for (const Json& x : v)
                if (x.is_number_integer()) out.push_back(x.get<int>());
        if (!v.is_array() || out.size() != v.size())
            fail(path_, ": key '", key, "' = ", v.dump(), " must be a list of layer indices");
        return out;
    }
    const std::string& path() const { return path_; }
    const Json& json() const { return json_; }

private:
    std::string path_;
    Json json_;
};

// What the loader does with a tensor.
enum class Matrix {
    kNorm,        // the layer's RMSNorm weight
    kRouter,      // the router (gate) weight
    kSharedGate,  // Qwen2-MoE's shared_expert_gate
    kW1,          // an MLP's gate_proj: the first half of w13
    kW3,          // an MLP's up_proj: the second half of w13
    kW13,         // an expert's W1 then W3 rows, from a fused gate_up_proj
    kW2,          // an MLP's down_proj; the last matrix of each MLP
    kDecoder,     // a part of the decoder beside the MoE blocks (decoder_tensors)
};

// A part of the decoder beside the MoE blocks (DecoderWeights).
enum class DecoderPart { kInputNorm, kQ, kK, kV, kO, kBq, kBk, kBv, kBo, kQNorm, kKNorm, kEmbed, kFinalNorm, kLmHead };

// The MLP a W matrix belongs to.
enum class Mlp { kNone, kExpert, kDense, kShared };

// One tensor a layer reads, or, when fused, the slice of expert `expert` (row `expert` of dim 0).
struct TensorSpec {
    std::string name;            // the full Hugging Face name
    std::vector<int64_t> shape;  // the whole tensor's shape, as the file's header must give it
    Matrix matrix = Matrix::kNorm;
    Mlp mlp = Mlp::kNone;
    int expert = -1;                         // Mlp::kExpert: the routed expert
    bool fused = false;                      // read rows [expert, expert + 1) of dim 0 only
    DecoderPart part = DecoderPart::kEmbed;  // kDecoder: which part
    int layer = -1;                          // kDecoder: the layer of a per-layer part

    // Elements read from a tensor of this shape.
    int64_t numel() const;
};

// Where decoder part t (t.layer: an index into w.layers) is held in w: a DecoderWeights, const or not.
template <typename Weights>
auto& decoder_slot(Weights& w, const TensorSpec& t) {
    switch (t.part) {
        case DecoderPart::kEmbed:
            return w.embed;
        case DecoderPart::kFinalNorm:
            return w.final_norm;
        case DecoderPart::kLmHead:
            return w.lm_head;
        default:
            break;
    }
    auto& a = w.layers.at(static_cast<size_t>(t.layer));
    switch (t.part) {
        case DecoderPart::kInputNorm:
            return a.input_norm;
        case DecoderPart::kQ:
            return a.wq;
        case DecoderPart::kK:
            return a.wk;
        case DecoderPart::kV:
            return a.wv;
        case DecoderPart::kO:
            return a.wo;
        case DecoderPart::kBq:
            return a.bq;
        case DecoderPart::kBk:
            return a.bk;
        case DecoderPart::kBv:
            return a.bv;
        case DecoderPart::kBo:
            return a.bo;
        case DecoderPart::kQNorm:
            return a.q_norm;
        default:
            return a.k_norm;
    }
}

// Every tensor layer `l` uses on a rank owning the experts with owns(e), in reading order: the norm, then the
// gate, each owned expert (W1, W3, W2; or its W13 and W2 slices), the shared expert and its gate, or the dense
// MLP. Names from the family's Arch table, shapes from info.shape and its dense and shared sizes.
std::vector<TensorSpec> layer_tensors(const CheckpointInfo& info, int l, const std::function<bool(int)>& owns);

// Fills info.layers[l]'s module, fused_experts and shared_expert from the tensor names of info.weight_map
// (layers[l].moe already set). Fails naming the file and the tensors when a layer holds both expert layouts,
// half of a fused pair, or Mixtral's router under both block_sparse_moe and mlp.
void detect_layer(CheckpointInfo& info, int l);

// Fills info.shape.decoder from config.json's attention, vocabulary and position keys (either generation), for
// the whole-model commands; fails naming the file and the key, or a feature epmoe does not implement
// (rope_scaling, clip_qkv, a sliding window on some layers only, ...).
void apply_decoder_config(const std::string& config_path, CheckpointInfo& info);

// The decoder's own tensors of layers [first, last]: each layer's input norm and attention (with the biases
// and q/k norms the checkpoint holds), then the embeddings, the final norm and (untied) the LM head.
std::vector<TensorSpec> decoder_tensors(const CheckpointInfo& info, int first, int last);

// Fills info's family, shape, dense_d_ff, shared_d_ff and layers from a Hugging Face config.json (either
// generation, transformers 4 or 5) and the tensor names of info.weight_map. Fails naming the file and the
// key (missing, mistyped, unknown model_type, expert counts that disagree).
void apply_hf_config(const std::string& config_path, CheckpointInfo& info);

// The same from epmoe's model.* keys, for a single .safetensors file with no config.json: the family and the
// layer count come from the tensor names of info.weight_map.
void apply_model_config(const ModelConfig& m, CheckpointInfo& info);

// The CheckpointInfo the loader will build from what write_checkpoint writes of `model` and `decoder`: family,
// shape, each layer's kind and module (transformers 4's names, experts one by one), the dense and shared MLP
// sizes, and a weight_map entry (file "") for each attention bias the decoder holds. Fails naming the layer and
// part when the model does not fit what the family's config.json can say.
CheckpointInfo info_for_writing(Family family, const Model& model, const DecoderWeights& decoder);

// The config.json of that checkpoint (checkpoint_write.hpp lists the keys' sources).
Json hf_config_for(const CheckpointInfo& info, const CheckpointWriteOptions& options);

}  // namespace epmoe::checkpoint_detail
