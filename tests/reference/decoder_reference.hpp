// A plain single-process reference of a whole MoE decoder as Hugging Face's eager modeling_*.py computes it
// (Mixtral, OLMoE, Qwen2-MoE, Qwen3-MoE): embeddings, attention, the MoE blocks (moe_reference.hpp's
// layer_mlp), the final norm and the LM head. Straightforward loops in double precision, no BLAS, no MPI,
// none of epmoe's ops (in particular not ops/attention): tests compare the runtime and HF's logits against it.
#pragma once

#include <cstdint>
#include <vector>

#include "epmoe/model/decoder.hpp"
#include "epmoe/model/model.hpp"

namespace epmoe::reference {

// The logits of one sequence at positions 0 .. S-1, causal (and within shape.decoder.sliding_window when set).
// model: every layer with every expert in FP32; decoder: the same layers' attention, embeddings, final norm and
// LM head. ids: [S], each in [0, vocab_size). Returns [S, vocab_size].
std::vector<float> decoder_logits(const Model& model, const DecoderWeights& decoder, const std::vector<int32_t>& ids);

// The mean next-token NLL of ids under logits, in double: mean over t < S - 1 of -log softmax(logits[t])[ids[t+1]].
// logits: [S, vocab]; ids: [S], S >= 2.
double mean_nll(const std::vector<float>& logits, const std::vector<int32_t>& ids, int vocab);

// Greedy decoding without a cache: num_new times, re-runs decoder_logits on the whole prefix and appends the
// first index of the last row's largest logit. Returns the num_new new tokens only.
std::vector<int32_t> greedy_generate(const Model& model, const DecoderWeights& decoder, std::vector<int32_t> prompt,
                                     int num_new);

}  // namespace epmoe::reference
