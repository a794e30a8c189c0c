// --input: a safetensors file holding hidden_states [T, d_model] (the same tokens every step) or
// [S, T, d_model] (a sequence of S steps; step s runs slice s mod S), F32, BF16 or F16, split over ranks.
// No MPI: callers wrap the read in mpi::all_or_none.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace epmoe {

// This rank's block of the input: rows [first_row, first_row + num_rows) of total_rows, of every step.
struct InputShard {
    std::vector<float> rows;  // [num_steps, num_rows, d_model]
    int64_t num_steps = 1;    // S (1 for a [T, d_model] tensor)
    int64_t first_row = 0;    // floor(rank * total_rows / num_ranks)
    int64_t num_rows = 0;     // floor((rank + 1) * total_rows / num_ranks) - first_row
    int64_t total_rows = 0;   // T
};

// Reads only this rank's rows of hidden_states. Fails naming the file and tensor on a missing tensor, a
// rank other than 2, a d_model other than `d_model`, a non-float dtype, no rows, or a NaN/Inf value.
InputShard load_input(const std::string& path, int d_model, int rank, int num_ranks);

}  // namespace epmoe
