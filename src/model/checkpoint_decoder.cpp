// The decoder beside the MoE blocks of a Hugging Face checkpoint: config.json's attention, vocabulary and
// position keys (transformers 4 and 5), the tensors they name (the family's Arch table), and loading them whole
// on every rank (attention is data-parallel). A feature epmoe does not compute is an error naming its key.
#include <cmath>
#include <fstream>

#include "checkpoint_internal.hpp"
#include "epmoe/base/error.hpp"

namespace epmoe::checkpoint_detail {
namespace {

// RoPE's base: v4's top-level rope_theta, or v5's rope_parameters {rope_theta, rope_type: "default"}. Any
// rope_scaling (v4) or another rope_type (v5) changes the angles: refused, naming the key.
double rope_theta(const HfConfig& c) {
    const Json& j = c.json();
    if (c.has("rope_scaling")) {
        const Json& s = j.at("rope_scaling");
        const bool plain = s.is_object() && s.value("rope_type", s.value("type", "default")) == "default";
        if (!plain) fail(c.path(), ": key 'rope_scaling' = ", s.dump(), " is not implemented (only default RoPE)");
    }
    if (c.has("rope_parameters")) {
        const Json& p = j.at("rope_parameters");
        if (!p.is_object() || !p.contains("rope_theta") || !p.at("rope_theta").is_number())
            fail(c.path(), ": key 'rope_parameters' = ", p.dump(), " has no numeric rope_theta");
        const std::string type = p.value("rope_type", "default");
        if (type != "default")
            fail(c.path(), ": key 'rope_parameters.rope_type' = \"", type, "\" is not implemented (only default)");
        return p.at("rope_theta").get<double>();
    }
    return c.has("rope_theta") ? c.positive("rope_theta") : 10000.0;
}

// Mixtral's sliding_window (null or absent: every key is visible). Qwen's use_sliding_window applies a window
// from max_window_layers on, and layer_types naming sliding and full layers both mix windows: refused.
int sliding_window(const HfConfig& c, Family family) {
    if (c.boolean_or("use_sliding_window", false))
        fail(c.path(), ": key 'use_sliding_window' = true is not implemented (a window on some layers only)");
    int window = family == Family::kMixtral && c.has("sliding_window") ? c.integer("sliding_window") : 0;
    if (c.has("layer_types")) {
        const Json& types = c.json().at("layer_types");
        bool sliding = false, full = false;
        for (const Json& t : types) {
            sliding = sliding || t == "sliding_attention";
            full = full || t == "full_attention";
            if (t != "sliding_attention" && t != "full_attention")
                fail(c.path(), ": key 'layer_types' holds ", t.dump(), ": only full_attention and sliding_attention");
        }
        if (sliding && full)
            fail(c.path(), ": key 'layer_types' mixes sliding and full attention layers: not implemented");
        if (full) window = 0;
        if (sliding && window == 0)
            fail(c.path(), ": key 'layer_types' says sliding_attention but 'sliding_window' is not set");
    }
    return window;
}

// Ids of a token key: an integer, a list of integers, or null/absent (none). Each must be a vocabulary id.
std::vector<int32_t> token_ids(const Json& j, const char* key, const std::string& path, int vocab_size) {
    std::vector<int32_t> out;
    if (!j.contains(key) || j.at(key).is_null()) return out;
    const Json& v = j.at(key);
    for (const Json& id : v.is_array() ? v : Json::array({v})) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab_size)
            fail(path, ": key '", key, "' = ", v.dump(), " must be token ids in [0, ", vocab_size, ")");
        out.push_back(id.get<int32_t>());
    }
    return out;
}

// The end-of-sequence and padding ids generate() stops and pads with: generation_config.json's when the folder
// has one (transformers' generate reads it), else config.json's.
void generation_ids(const HfConfig& c, CheckpointInfo& info) {
    const std::string gen_path = c.path().substr(0, c.path().rfind('/') + 1) + "generation_config.json";
    Json gen;
    std::string source = c.path();
    if (std::ifstream in(gen_path); in) {
        try {
            gen = Json::parse(in);
        } catch (const Json::parse_error& e) {
            fail(gen_path, ": not valid JSON (", e.what(), ")");
        }
        if (!gen.is_object()) fail(gen_path, ": must be a JSON object");
        source = gen_path;
    } else {
        gen = c.json();
    }
    const int vocab = info.shape.decoder.vocab_size;
    info.eos_token_ids = token_ids(gen, "eos_token_id", source, vocab);
    const std::vector<int32_t> pad = token_ids(gen, "pad_token_id", source, vocab);
    info.pad_token_id = pad.empty() ? -1 : pad[0];
}

TensorSpec decoder_spec(std::string name, std::vector<int64_t> shape, DecoderPart part, int layer) {
    TensorSpec t;
    t.name = std::move(name);
    t.shape = std::move(shape);
    t.matrix = Matrix::kDecoder;
    t.part = part;
    t.layer = layer;
    return t;
}

}  // namespace

void apply_decoder_config(const std::string& config_path, CheckpointInfo& info) {
    HfConfig c(config_path);
    DecoderShape& d = info.shape.decoder;
    d.vocab_size = c.integer("vocab_size", 2);
    d.num_heads = c.integer("num_attention_heads");
    d.num_kv_heads = c.integer_or("num_key_value_heads", d.num_heads);
    if (d.num_heads % d.num_kv_heads != 0)
        fail(config_path, ": key 'num_key_value_heads' = ", d.num_kv_heads, " must divide 'num_attention_heads' = ",
             d.num_heads);
    d.head_dim = c.has("head_dim") ? c.integer("head_dim") : info.shape.d_model / d.num_heads;  // v5 may write null
    if (!c.has("head_dim") && info.shape.d_model % d.num_heads != 0)
        fail(config_path, ": 'hidden_size' = ", info.shape.d_model, " is not a multiple of 'num_attention_heads' = ",
             d.num_heads, " and 'head_dim' is not set");
    if (d.head_dim % 2 != 0) fail(config_path, ": key 'head_dim' = ", d.head_dim, " must be even (RoPE)");
    d.rope_theta = rope_theta(c);
    d.sliding_window = sliding_window(c, info.family);
    if (c.has("clip_qkv")) fail(config_path, ": key 'clip_qkv' = ", c.json().at("clip_qkv").dump(), " is not implemented");
    if (c.has("partial_rotary_factor") && c.json().at("partial_rotary_factor") != 1.0)
        fail(config_path, ": key 'partial_rotary_factor' is not implemented (RoPE over the whole head)");
    if (c.has("hidden_act") && c.json().at("hidden_act") != "silu")
        fail(config_path, ": key 'hidden_act' = ", c.json().at("hidden_act").dump(), " is not implemented (silu)");
    d.tie_word_embeddings = c.boolean_or("tie_word_embeddings", false);
    const Arch& a = arch_of(info.family);
    d.qk_norm = a.qk_norm;
    d.qkv_bias = info.weight_map.count(cat("model.layers.0.", a.attention, ".", a.attn.q, ".bias")) > 0;
    generation_ids(c, info);
}

std::vector<TensorSpec> decoder_tensors(const CheckpointInfo& info, int first, int last) {
    const Arch& a = arch_of(info.family);
    const DecoderShape& s = info.shape.decoder;
    const int64_t d = info.shape.d_model, q = int64_t{s.num_heads} * s.head_dim, kv = int64_t{s.num_kv_heads} * s.head_dim;
    std::vector<TensorSpec> out;
    for (int l = first; l <= last; ++l) {
        const std::string p = cat("model.layers.", l, ".", a.attention, ".");
        auto has = [&](const std::string& name) { return info.weight_map.count(name) > 0; };
        out.push_back(decoder_spec(cat("model.layers.", l, ".", a.input_norm), {d}, DecoderPart::kInputNorm, l));
        const struct {
            const char* name;
            int64_t rows, cols;
            DecoderPart w, b;
        } proj[] = {{a.attn.q, q, d, DecoderPart::kQ, DecoderPart::kBq},
                    {a.attn.k, kv, d, DecoderPart::kK, DecoderPart::kBk},
                    {a.attn.v, kv, d, DecoderPart::kV, DecoderPart::kBv},
                    {a.attn.o, d, q, DecoderPart::kO, DecoderPart::kBo}};
        for (const auto& m : proj) {
            out.push_back(decoder_spec(cat(p, m.name, ".weight"), {m.rows, m.cols}, m.w, l));
            if (has(cat(p, m.name, ".bias"))) out.push_back(decoder_spec(cat(p, m.name, ".bias"), {m.rows}, m.b, l));
        }
        if (s.qk_norm != QkNorm::kNone) {
            const bool whole = s.qk_norm == QkNorm::kWhole;
            out.push_back(decoder_spec(p + a.attn.q_norm, {whole ? q : s.head_dim}, DecoderPart::kQNorm, l));
            out.push_back(decoder_spec(p + a.attn.k_norm, {whole ? kv : s.head_dim}, DecoderPart::kKNorm, l));
        }
    }
    out.push_back(decoder_spec(a.embed, {s.vocab_size, d}, DecoderPart::kEmbed, -1));
    out.push_back(decoder_spec(a.final_norm, {d}, DecoderPart::kFinalNorm, -1));
    if (!s.tie_word_embeddings) out.push_back(decoder_spec(a.lm_head, {s.vocab_size, d}, DecoderPart::kLmHead, -1));
    return out;
}

}  // namespace epmoe::checkpoint_detail
