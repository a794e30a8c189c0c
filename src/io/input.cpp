#include "epmoe/io/input.hpp"

#include <algorithm>
#include <cmath>

#include "epmoe/base/error.hpp"
#include "epmoe/io/safetensors.hpp"

namespace epmoe {

InputShard load_input(const std::string& path, int d_model, int rank, int num_ranks) {
    SafetensorsFile file = SafetensorsFile::open(path);
    const TensorInfo& t = file.at("hidden_states");
    const size_t dims = t.shape.size();
    if ((dims != 2 && dims != 3) || t.shape[dims - 1] != d_model) {
        std::string shape;
        for (size_t i = 0; i < dims; ++i) shape += (i ? ", " : "") + std::to_string(t.shape[i]);
        fail(path, ": tensor hidden_states has shape [", shape, "], expected [T, ", d_model, "] or [S, T, ", d_model,
             "] (d_model of the model)");
    }
    if (!is_float_dtype(t.dtype))
        fail(path, ": tensor hidden_states has dtype ", t.dtype, "; expected F32, BF16 or F16");
    InputShard shard;
    shard.num_steps = dims == 3 ? t.shape[0] : 1;
    shard.total_rows = t.shape[dims - 2];
    if (shard.total_rows == 0 || shard.num_steps == 0) fail(path, ": tensor hidden_states has no rows");
    shard.first_row = rank * shard.total_rows / num_ranks;
    shard.num_rows = (rank + 1) * shard.total_rows / num_ranks - shard.first_row;
    shard.rows.resize(static_cast<size_t>(shard.num_steps * shard.num_rows) * d_model);
    // Each step's block of rows, read as rows of the [S * T, d_model] view of the tensor.
    TensorInfo flat = t;
    flat.shape = {shard.num_steps * shard.total_rows, d_model};
    const size_t step_floats = static_cast<size_t>(shard.num_rows) * d_model;
    for (int64_t s = 0; s < shard.num_steps; ++s) {
        const int64_t begin = s * shard.total_rows + shard.first_row;
        file.read_rows_f32(flat, begin, begin + shard.num_rows,
                           std::span<float>(shard.rows).subspan(static_cast<size_t>(s) * step_floats, step_floats));
    }
    for (size_t i = 0; i < shard.rows.size(); ++i) {
        if (std::isfinite(shard.rows[i])) continue;
        const int64_t step = static_cast<int64_t>(i / std::max<size_t>(step_floats, 1));
        const int64_t row = shard.first_row + static_cast<int64_t>(i % std::max<size_t>(step_floats, 1)) / d_model;
        fail(path, ": tensor hidden_states ", dims == 3 ? cat("step ", step, " ") : std::string(), "row ", row,
             " column ", i % d_model, " is ", shard.rows[i], " (NaN and Inf are not allowed)");
    }
    return shard;
}

}  // namespace epmoe
