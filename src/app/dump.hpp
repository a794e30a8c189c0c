// --dump-output: the final hidden states and every layer's routing, gathered in input order.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "epmoe/comm/mpi.hpp"
#include "epmoe/model/model.hpp"
#include "epmoe/moe/router.hpp"

namespace epmoe {

// Gathers this rank's rows (ranks hold consecutive blocks of the input, in rank order) and writes on
// rank 0: hidden_states [T, d_model] F32, and per MoE layer l (index in the stack run; dense layers have
// none) topk_ids.<l> [T, top_k] I32 and
// topk_weights.<l> [T, top_k] F32. Collective; a write failure reaches every rank as an Error.
// h: [num_tokens, d_model]; routing: [num_layers].
void dump_output(const mpi::Comm& comm, const std::string& path, const ModelShape& shape, std::span<const float> h,
                 const std::vector<Routing>& routing);

}  // namespace epmoe
