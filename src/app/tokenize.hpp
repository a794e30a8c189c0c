// `epmoe tokenize --model DIR --text FILE --out FILE`: a text file's token ids through the checkpoint's own
// tokenizer, written once for eval / generate / train --tokens.
#pragma once

#include <string>
#include <vector>

#include "epmoe/comm/mpi.hpp"

namespace epmoe {

// Parses the arguments after "tokenize" and runs it; returns the exit code. Each rank encodes a part of the
// file cut where the tokenizer allows (the ids equal Hugging Face's on the whole file); rank 0 writes them.
int tokenize_command(const mpi::Comm& world, const std::vector<std::string>& args);

}  // namespace epmoe
