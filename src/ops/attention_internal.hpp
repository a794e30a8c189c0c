// What attention's forward and backward share (private to src/ops).
#pragma once

#include <cstdint>

namespace epmoe {

// Softmax of row[first, end) in place, FP32 as HF's eager attention (max subtracted, a vectorised exp, sums of
// 16 lanes added in double); the rest of row [cols] becomes 0. The backward recomputes its probabilities with it,
// so they are the forward's.
void attn_masked_softmax(float* row, int64_t cols, int64_t first, int64_t end);

}  // namespace epmoe
