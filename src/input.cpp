#include "epmoe/input.hpp"

#include <cmath>

#include "epmoe/error.hpp"
#include "epmoe/safetensors.hpp"

namespace epmoe {

InputShard load_input(const std::string& path, int d_model, int rank, int num_ranks) {
    SafetensorsFile file = SafetensorsFile::open(path);
    const TensorInfo& t = file.at("hidden_states");
    if (t.shape.size() != 2 || t.shape[1] != d_model)
        fail(path, ": tensor hidden_states has shape [", t.shape.size() ? t.shape[0] : 0,
             t.shape.size() > 1 ? ", " + std::to_string(t.shape[1]) : std::string(), "], expected [T, ", d_model,
             "] (d_model of the model)");
    if (!is_float_dtype(t.dtype)) fail(path, ": tensor hidden_states has dtype ", t.dtype, "; expected F32, BF16 or F16");
    InputShard shard;
    shard.total_rows = t.shape[0];
    if (shard.total_rows == 0) fail(path, ": tensor hidden_states has no rows");
    shard.first_row = rank * shard.total_rows / num_ranks;
    shard.num_rows = (rank + 1) * shard.total_rows / num_ranks - shard.first_row;
    shard.rows.resize(static_cast<size_t>(shard.num_rows) * d_model);
    file.read_rows_f32(t, shard.first_row, shard.first_row + shard.num_rows, shard.rows);
    for (size_t i = 0; i < shard.rows.size(); ++i)
        if (!std::isfinite(shard.rows[i]))
            fail(path, ": tensor hidden_states row ", shard.first_row + static_cast<int64_t>(i) / d_model, " column ",
                 i % d_model, " is ", shard.rows[i], " (NaN and Inf are not allowed)");
    return shard;
}

}  // namespace epmoe
