// `epmoe inspect PATH`: what a Hugging Face checkpoint holds, as epmoe reads it, without reading weights.
#pragma once

#include <string>
#include <vector>

#include "epmoe/base/config.hpp"
#include "epmoe/comm/mpi.hpp"
#include "epmoe/model/checkpoint.hpp"

namespace epmoe {

// The description of `ck` as JSON: family, layers (moe, moe+shared or dense), d_model, d_ff, experts,
// top_k, gate and normalisation settings, dtypes, total bytes, and for num_ranks ranks (contiguous
// placement) the checkpoint bytes each rank reads and the F32 weight bytes it holds.
Json inspect_json(const Checkpoint& ck, int num_ranks);

// The same as readable text, one fact a line.
std::string inspect_text(const Json& description);

// `epmoe inspect PATH [--ranks P] [--json] [--config F] [--set k=v]` on every rank of world; rank 0 prints.
// args: the arguments after "inspect". Returns the exit code; bad input is an AgreedError.
int inspect_command(const mpi::Comm& world, const std::vector<std::string>& args);

}  // namespace epmoe
