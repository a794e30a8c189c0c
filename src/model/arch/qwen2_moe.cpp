// Qwen2-MoE (Qwen2MoeForCausalLM): an MoE layer's mlp holds the router, the experts (of size
// moe_intermediate_size) and, when present, a shared expert added as sigmoid(shared_expert_gate · x) · mlp(x);
// mlp_only_layers and decoder_sparse_step make a layer a dense mlp of size intermediate_size.
#include "families.hpp"

namespace epmoe::arch {

const Arch kQwen2Moe = {
    .family = Family::kQwen2Moe,
    .experts_key = "num_experts",
    .d_ff_key = "moe_intermediate_size",
    .always_norm_topk = false,
    .sparse_step = true,
    .norm = "post_attention_layernorm.weight",  // [d_model]
    .moe_modules = {"mlp", nullptr},
    .router = "gate.weight",               // [num_experts, d_model]
    .expert = {.w1 = "gate_proj.weight",   // [d_ff, d_model]
               .w3 = "up_proj.weight",     // [d_ff, d_model]
               .w2 = "down_proj.weight"},  // [d_model, d_ff]
    .fused_w13 = "gate_up_proj",           // [num_experts, 2 * d_ff, d_model]
    .fused_w2 = "down_proj",               // [num_experts, d_model, d_ff]
    .dense_module = "mlp",
    .dense = {.w1 = "gate_proj.weight",   // [dense_d_ff, d_model]
              .w3 = "up_proj.weight",     // [dense_d_ff, d_model]
              .w2 = "down_proj.weight"},  // [d_model, dense_d_ff]
    .shared_module = "shared_expert",
    .shared = {.w1 = "gate_proj.weight",         // [shared_d_ff, d_model]
               .w3 = "up_proj.weight",           // [shared_d_ff, d_model]
               .w2 = "down_proj.weight"},        // [d_model, shared_d_ff]
    .shared_gate = "shared_expert_gate.weight",  // [1, d_model]
    .input_norm = "input_layernorm.weight",  // [d_model]
    .attention = "self_attn",
    .attn = {.q = "q_proj", .k = "k_proj", .v = "v_proj", .o = "o_proj", .q_norm = "q_norm.weight",
             .k_norm = "k_norm.weight"},
    .qk_norm = QkNorm::kNone,
    .embed = "model.embed_tokens.weight",  // [vocab_size, d_model]
    .final_norm = "model.norm.weight",     // [d_model]
    .lm_head = "lm_head.weight",           // [vocab_size, d_model]
    .architecture = "Qwen2MoeForCausalLM",
    .router_aux_loss_coef = 0.001,
};

}  // namespace epmoe::arch
