// --input parsing (src/io/input.cpp): [T, d_model] and [S, T, d_model] safetensors inputs split across ranks,
// and the errors of a bad shape or a NaN.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "epmoe/base/error.hpp"
#include "epmoe/io/input.hpp"
#include "epmoe/io/safetensors.hpp"

namespace epmoe {
namespace {

const std::string kInputCheckpoints = std::string(EPMOE_FIXTURES) + "/checkpoints/";

TEST(Input, RowsSplitAcrossRanks) {
    const std::string path = kInputCheckpoints + "mixtral_sharded/input.safetensors";  // [13, 32] F32
    InputShard all = load_input(path, 32, 0, 1);
    ASSERT_EQ(all.total_rows, 13);
    int64_t next = 0;
    for (int r = 0; r < 3; ++r) {
        InputShard s = load_input(path, 32, r, 3);
        EXPECT_EQ(s.first_row, next);
        EXPECT_EQ(s.num_rows, (r + 1) * 13 / 3 - r * 13 / 3);
        EXPECT_TRUE(std::equal(s.rows.begin(), s.rows.end(), all.rows.begin() + s.first_row * 32));
        next += s.num_rows;
    }
    EXPECT_EQ(next, 13);
    EXPECT_THROW(load_input(path, 16, 0, 1), Error);
}

// [S, T, d_model]: every rank gets its rows of every step, step-major; a NaN names its step.
TEST(Input, StepSequenceSplitAcrossRanks) {
    const int64_t steps = 3, rows = 5, d = 4;
    std::vector<float> values(static_cast<size_t>(steps * rows * d));
    for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
    const std::string path = ::testing::TempDir() + "epmoe_steps.safetensors";
    write_safetensors(path, {tensor_from_f32("hidden_states", {steps, rows, d}, values)});
    for (int r = 0; r < 2; ++r) {
        InputShard s = load_input(path, d, r, 2);
        EXPECT_EQ(s.num_steps, steps);
        EXPECT_EQ(s.total_rows, rows);
        EXPECT_EQ(s.first_row, r * rows / 2);
        ASSERT_EQ(s.rows.size(), static_cast<size_t>(steps * s.num_rows * d));
        for (int64_t k = 0; k < steps; ++k)
            for (int64_t i = 0; i < s.num_rows * d; ++i)
                EXPECT_EQ(s.rows[(k * s.num_rows) * d + i], values[(k * rows + s.first_row) * d + i]);
    }
    values[(2 * rows + 4) * d + 1] = std::nanf("");
    write_safetensors(path, {tensor_from_f32("hidden_states", {steps, rows, d}, values)});
    try {
        load_input(path, d, 1, 2);
        ADD_FAILURE() << "a NaN was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("step 2 row 4 column 1"), std::string::npos) << e.what();
    }
    write_safetensors(path, {tensor_from_f32("hidden_states", {1, steps, rows, d}, values)});
    EXPECT_THROW(load_input(path, d, 0, 1), Error);
}

}  // namespace
}  // namespace epmoe
