// Mixtral (MixtralForCausalLM): every layer is MoE, and the router always renormalises its top-k weights.
// transformers 4, and 5's default save, call the block block_sparse_moe with experts.{e}.w1/w3/w2; 5's runtime
// layout renames the block mlp (router mlp.gate.weight) and fuses the experts.
#include "families.hpp"

namespace epmoe::arch {

const Arch kMixtral = {
    .family = Family::kMixtral,
    .experts_key = "num_local_experts",
    .d_ff_key = "intermediate_size",
    .always_norm_topk = true,
    .sparse_step = false,
    .norm = "post_attention_layernorm.weight",  // [d_model]
    .moe_modules = {"block_sparse_moe", "mlp"},
    .router = "gate.weight",        // [num_experts, d_model]
    .expert = {.w1 = "w1.weight",   // [d_ff, d_model]
               .w3 = "w3.weight",   // [d_ff, d_model]
               .w2 = "w2.weight"},  // [d_model, d_ff]
    .fused_w13 = "gate_up_proj",    // [num_experts, 2 * d_ff, d_model]
    .fused_w2 = "down_proj",        // [num_experts, d_model, d_ff]
    .dense_module = nullptr,
    .dense = {nullptr, nullptr, nullptr},
    .shared_module = nullptr,
    .shared = {nullptr, nullptr, nullptr},
    .shared_gate = nullptr,
    .input_norm = "input_layernorm.weight",  // [d_model]
    .attention = "self_attn",
    .attn = {.q = "q_proj", .k = "k_proj", .v = "v_proj", .o = "o_proj", .q_norm = "q_norm.weight",
             .k_norm = "k_norm.weight"},
    .qk_norm = QkNorm::kNone,
    .embed = "model.embed_tokens.weight",  // [vocab_size, d_model]
    .final_norm = "model.norm.weight",     // [d_model]
    .lm_head = "lm_head.weight",           // [vocab_size, d_model]
    .architecture = "MixtralForCausalLM",
    .router_aux_loss_coef = 0.001,
};

}  // namespace epmoe::arch
