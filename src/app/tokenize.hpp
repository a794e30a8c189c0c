// `epmoe tokenize --model DIR --text FILE --out FILE`: a text file's token ids through the checkpoint's own
// tokenizer, written once for eval / generate / train --tokens.
#pragma once

#include <string>
#include <vector>

#include "epmoe/comm/mpi.hpp"

namespace epmoe {

// Parses the arguments after "tokenize" and runs it; returns the exit code. Rank 0 does the work (the input
// is tokenized as one stream, as Hugging Face tokenizers would encode it whole); other ranks wait.
int tokenize_command(const mpi::Comm& world, const std::vector<std::string>& args);

}  // namespace epmoe
