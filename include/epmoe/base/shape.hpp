// The shape of an MoE stack and how its gate scores experts: plain data every layer of the library shares
// (the config's model.* keys, a checkpoint's config.json, the router, the dispatch).
#pragma once

namespace epmoe {

// How the gate scores experts: softmax over all experts, or sigmoid of each logit.
enum class GateKind { kSoftmax, kSigmoid };

// Where a decoder's attention normalises q and k before RoPE: nowhere (Mixtral, Qwen2-MoE), over the whole
// projection of all heads (OLMoE's q_norm/k_norm [num_heads * head_dim]), or per head (Qwen3-MoE's [head_dim]).
enum class QkNorm { kNone, kWhole, kPerHead };

// The rest of a whole decoder beside its MoE blocks: vocabulary, attention and positions (the whole-model
// commands, eval and generate; `epmoe run` runs the MoE blocks alone and ignores it).
struct DecoderShape {
    int vocab_size = 0;
    int num_heads = 0;        // query heads
    int num_kv_heads = 0;     // key/value heads; num_heads % num_kv_heads == 0 (grouped-query attention)
    int head_dim = 0;         // need not be d_model / num_heads
    double rope_theta = 0;    // RoPE base, HF's rotate-half layout
    int sliding_window = 0;   // keys within this many positions of the query; 0 = all (Mixtral's sliding_window)
    bool qkv_bias = false;    // q/k/v projections carry biases (Qwen2-MoE)
    QkNorm qk_norm = QkNorm::kNone;
    bool tie_word_embeddings = false;  // the LM head is the embedding matrix
};

// Sizes and routing settings shared by every layer.
struct ModelShape {
    int num_layers = 0;
    int d_model = 0;
    int d_ff = 0;  // an expert's intermediate size
    int num_experts = 0;
    int top_k = 0;
    GateKind gate = GateKind::kSoftmax;
    bool norm_topk_prob = true;
    double rms_norm_eps = 1e-6;
    DecoderShape decoder;  // the attention, embeddings and LM head around the MoE blocks

    // FLOPs of one SwiGLU MLP of intermediate size d_ff on one token: three GEMVs of d_model x d_ff, 2 FLOPs
    // per multiply-add.
    static double mlp_flops_per_token(int d_model, int d_ff) { return 6.0 * d_model * d_ff; }
    // FLOPs of one expert on one token.
    double expert_flops_per_token() const { return mlp_flops_per_token(d_model, d_ff); }
};

}  // namespace epmoe
