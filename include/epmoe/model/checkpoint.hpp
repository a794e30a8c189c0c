// Hugging Face MoE checkpoints (Mixtral, OLMoE, Qwen2-MoE, Qwen3-MoE) as transformers 4 and 5 save them:
// config.json, each family's tensor names (arch.hpp), per-expert or fused experts, sharded files, and per-rank
// loading of only the experts a rank owns (of a fused tensor, only their rows). No MPI: callers wrap loading
// in mpi::all_or_none. Every bad input is an epmoe::Error naming the file and the key or tensor.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "epmoe/base/config.hpp"
#include "epmoe/io/safetensors.hpp"
#include "epmoe/model/arch.hpp"
#include "epmoe/model/decoder.hpp"
#include "epmoe/model/model.hpp"

namespace epmoe {

// What one decoder layer of the checkpoint holds (its MLP part; attention is never read). The tensor names
// of each part are the family's Arch table (epmoe/model/arch.hpp).
struct LayerKind {
    bool moe = true;             // false: a dense SwiGLU `mlp` of size dense_d_ff
    bool shared_expert = false;  // Qwen2-MoE mlp.shared_expert.* and mlp.shared_expert_gate.weight present
    bool fused_experts = false;  // experts.gate_up_proj and experts.down_proj (transformers 5's runtime layout)
                                 // rather than experts.{e}.*
    std::string module;          // the MLP's module: "mlp", or Mixtral's v4 "block_sparse_moe"
};

// A checkpoint described by its headers and config.json; no tensor data has been read.
struct CheckpointInfo {
    std::string path;         // the directory or .safetensors file given
    std::string config_path;  // config.json read (or "--config" for a single file described by model.*)
    Family family = Family::kMixtral;
    ModelShape shape;                // d_model, d_ff (expert size), num_experts, top_k, norm_topk_prob, eps;
                                     // num_layers = num_hidden_layers
    int dense_d_ff = 0;              // intermediate_size of dense layers (0 if there are none)
    int shared_d_ff = 0;             // shared_expert_intermediate_size (0 if no shared expert)
    std::vector<LayerKind> layers;   // [num_hidden_layers]
    std::vector<std::string> files;  // safetensors files, in index order
    std::map<std::string, std::string> weight_map;  // tensor name -> file (every tensor of every file)
    // After require_decoder: generation_config.json's (else config.json's) eos_token_id (none, one or a list)
    // and pad_token_id (-1 = none): what generate stops and pads with.
    std::vector<int32_t> eos_token_ids;
    int32_t pad_token_id = -1;

    // The tensor name prefix of layer `index`'s MLP: "model.layers.N.<layers[N].module>.".
    std::string mlp_prefix(int index) const;
};

// Parses "A-B" (inclusive, 0-based) or "" (all layers) against num_layers; fails naming model.layers.
std::pair<int, int> parse_layer_range(const std::string& text, int num_layers);

// An opened checkpoint: one read-only map per file. Move-only.
class Checkpoint {
public:
    // Reads config.json (or, for a single .safetensors file with no config.json beside it, the model.*
    // keys of `model`), maps and validates every file, and checks every tensor the runtime uses for
    // presence, dtype and shape. No tensor data is read. @param path a checkpoint directory or .safetensors file
    static Checkpoint open(const std::string& path, const ModelConfig& model);

    const CheckpointInfo& info() const { return info_; }
    // The file holding tensor `name` and its entry; fails naming the tensor if absent.
    std::pair<const SafetensorsFile*, const TensorInfo*> find(const std::string& name) const;
    // Source bytes converted so far over all files (SafetensorsFile::bytes_converted).
    uint64_t bytes_converted() const;

    // Builds the model of layers [first, last]: every layer's norm, gate, shared expert and dense MLP,
    // and the experts e with owns(e) true. Reads (converts) only those tensors; hands each MLP to
    // kernel.prepare as soon as it is read, and the model keeps the kernel. progress, if given, is called after
    // each layer with the layers read so far and their number.
    using LoadProgress = std::function<void(int layers_read, int layers)>;
    Model load(int first, int last, const std::function<bool(int)>& owns,
               std::shared_ptr<const MlpKernel> kernel = default_mlp_kernel(), const LoadProgress& progress = {}) const;

    // For the whole-model commands: reads config.json's decoder keys into info().shape.decoder and checks the
    // decoder's tensors (every layer's input norm and attention, embeddings, final norm, LM head) for presence,
    // dtype and shape. Fails naming the file and key or tensor; a single .safetensors file without config.json
    // has no decoder shape and is refused.
    void require_decoder();
    // Every rank's copy of the decoder of layers [first, last] (after require_decoder).
    DecoderWeights load_decoder(int first, int last) const;

    // Source bytes that load(first, last, owns) reads: the shard a rank maps and converts. Of a fused experts
    // tensor only the owned experts' slices count.
    uint64_t shard_bytes(int first, int last, const std::function<bool(int)>& owns) const;

    // Floats load(first, last, owns) converts: the weights it holds before the kernel's own form (x4 bytes).
    uint64_t shard_floats(int first, int last, const std::function<bool(int)>& owns) const;

    // The tensors load(first, last, owns) reads (wholly, or an expert's slice of a fused one), in reading
    // order, each named once.
    std::vector<std::string> used_tensors(int first, int last, const std::function<bool(int)>& owns) const;

    // Source bytes of every tensor of every file (used or not).
    uint64_t total_bytes() const;

    // Tensors per dtype over all files: {"BF16": 12, ...}.
    std::map<std::string, int> dtype_counts() const;

private:
    Checkpoint() = default;
    void check_tensors() const;
    // Fails naming the file unless tensor `name` is there, a float dtype, of this shape (from config.json).
    void check_tensor(const std::string& name, const std::vector<int64_t>& shape) const;

    CheckpointInfo info_;
    std::map<std::string, std::unique_ptr<SafetensorsFile>> files_;  // by path
};

}  // namespace epmoe
