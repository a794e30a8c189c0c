// The Hugging Face names of each MoE family, one table per family in src/model/arch/<family>.cpp (llama.cpp's
// src/models/<arch>.cpp): every tensor of a decoder layer's MLP part that epmoe reads, named once with its
// shape, and the config.json keys that differ between families. The checkpoint loader lists, checks and reads
// tensors through these tables alone. Attention, embeddings and the LM head are not named: `epmoe run` never
// reads them. Pure data; no MPI, no I/O.
#pragma once

#include <string>

#include "epmoe/base/shape.hpp"

namespace epmoe {

// The checkpoint layouts epmoe reads, from config.json's model_type.
enum class Family { kMixtral, kOlmoe, kQwen2Moe, kQwen3Moe };

// "mixtral", "olmoe", "qwen2_moe" or "qwen3_moe".
const char* family_name(Family family);

// One SwiGLU MLP's matrices by name under its module: y = W2 · (silu(W1 · x) ⊙ (W3 · x)).
struct SwigluNames {
    const char* w1;  // gate_proj, [d_ff, d_model]
    const char* w3;  // up_proj, [d_ff, d_model]
    const char* w2;  // down_proj, [d_model, d_ff]
};

// A decoder layer's attention by name under its module; each projection's weight is "<name>.weight" and its
// optional bias "<name>.bias" (nn.Linear).
struct AttentionNames {
    const char* q;       // [num_heads * head_dim, d_model]
    const char* k;       // [num_kv_heads * head_dim, d_model]
    const char* v;       // [num_kv_heads * head_dim, d_model]
    const char* o;       // [d_model, num_heads * head_dim]
    const char* q_norm;  // [num_heads * head_dim] (QkNorm::kWhole) or [head_dim] (kPerHead)
    const char* k_norm;  // [num_kv_heads * head_dim] or [head_dim]
};

// One family's names, each under "model.layers.{l}." (modules end without the dot), and its config keys.
// A layer's routed experts come in one of two layouts under "<moe module>.experts.": per expert
// ("{e}.<expert.w1>" ...: transformers 4, and 5's default save) or fused (fused_w13 and fused_w2, each holding
// every expert along dim 0: transformers 5's runtime layout, save_pretrained(save_original_format=False)).
struct Arch {
    Family family;
    const char* experts_key;     // the expert count's config key, as the family's v4 config names it
    const char* d_ff_key;        // the routed experts' intermediate size
    bool always_norm_topk;       // true: the top-k weights are always renormalised (Mixtral); false: norm_topk_prob
    bool sparse_step;            // decoder_sparse_step and mlp_only_layers make some layers dense (Qwen)
    const char* norm;            // the RMSNorm weight g before the MLP
    const char* moe_modules[2];  // the MoE block's module, v4's name first, then v5's runtime name (or nullptr)
    const char* router;          // under the MoE module
    SwigluNames expert;          // under "<moe module>.experts.{e}."
    const char* fused_w13;       // under "<moe module>.experts.": W1 rows then W3 rows of every expert
    const char* fused_w2;        // under "<moe module>.experts."
    const char* dense_module;    // the MLP module of a dense layer, or nullptr if the family has none
    SwigluNames dense;           // under dense_module
    const char* shared_module;   // under the MoE module: Qwen2-MoE's shared expert, or nullptr
    SwigluNames shared;          // under "<moe module>.<shared_module>."
    const char* shared_gate;     // under the MoE module
    // The rest of the decoder (eval, generate): per layer under "model.layers.{l}.", then the model's own.
    const char* input_norm;      // the RMSNorm weight g before attention, [d_model]
    const char* attention;       // the attention module
    AttentionNames attn;         // under the attention module
    QkNorm qk_norm;              // where q and k are normalised (config.json has no key for it: the family's)
    const char* embed;           // [vocab_size, d_model]
    const char* final_norm;      // [d_model]
    const char* lm_head;         // [vocab_size, d_model]; absent when tie_word_embeddings
    // What a written config.json names (checkpoint_write.hpp).
    const char* architecture;     // config.json's architectures[0], the transformers class
    double router_aux_loss_coef;  // the family's default in transformers' configuration class
};

// The table of `family`.
const Arch& arch_of(Family family);

// The table whose family_name is `model_type`, or nullptr.
const Arch* arch_for_model_type(const std::string& model_type);

}  // namespace epmoe
