// OLMoE (OlmoeForCausalLM): every layer is MoE under mlp; norm_topk_prob defaults to false. transformers 5's
// runtime layout fuses the experts under the same module.
#include "families.hpp"

namespace epmoe::arch {

const Arch kOlmoe = {
    .family = Family::kOlmoe,
    .experts_key = "num_experts",
    .d_ff_key = "intermediate_size",
    .always_norm_topk = false,
    .sparse_step = false,
    .norm = "post_attention_layernorm.weight",  // [d_model]
    .moe_modules = {"mlp", nullptr},
    .router = "gate.weight",               // [num_experts, d_model]
    .expert = {.w1 = "gate_proj.weight",   // [d_ff, d_model]
               .w3 = "up_proj.weight",     // [d_ff, d_model]
               .w2 = "down_proj.weight"},  // [d_model, d_ff]
    .fused_w13 = "gate_up_proj",           // [num_experts, 2 * d_ff, d_model]
    .fused_w2 = "down_proj",               // [num_experts, d_model, d_ff]
    .dense_module = nullptr,
    .dense = {nullptr, nullptr, nullptr},
    .shared_module = nullptr,
    .shared = {nullptr, nullptr, nullptr},
    .shared_gate = nullptr,
    .input_norm = "input_layernorm.weight",  // [d_model]
    .attention = "self_attn",
    .attn = {.q = "q_proj", .k = "k_proj", .v = "v_proj", .o = "o_proj", .q_norm = "q_norm.weight",
             .k_norm = "k_norm.weight"},
    .qk_norm = QkNorm::kWhole,
    .embed = "model.embed_tokens.weight",  // [vocab_size, d_model]
    .final_norm = "model.norm.weight",     // [d_model]
    .lm_head = "lm_head.weight",           // [vocab_size, d_model]
    .architecture = "OlmoeForCausalLM",
    .router_aux_loss_coef = 0.01,
};

}  // namespace epmoe::arch
