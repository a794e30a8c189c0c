// The test-time router correction of `--policy ttt` (control/ttt.hpp trains it): per MoE layer a low-rank
// fast-weight term added to the gate logits, z' = z + (x A) B + b, and the rows each step keeps for the online
// update. Pure compute; no MPI. Each row is computed alone, in double, so the corrected logits depend neither on
// the batch nor on the rank count.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace epmoe {

struct RouterCorrection {
    int d_model = 0, num_experts = 0, rank = 0;
    std::vector<float> a;     // [rank, d_model]   A, stored transposed: row j is A's column j
    std::vector<float> b;     // [rank, num_experts]   B
    std::vector<float> bias;  // [num_experts]   b

    // B and b all zero: the correction is exactly 0 and apply() leaves the logits untouched.
    bool is_zero() const;
    // logits [n, num_experts] += (x A) B + b; x: [n, d_model].
    void apply(std::span<const float> x, std::span<float> logits) const;
    // u = x A: [n, rank], in double; x: [n, d_model].
    void project(std::span<const float> x, std::vector<double>& u) const;
};

// What the forward reads and writes for the update: the corrections, and per layer the captured rows.
struct RouterAdaptation {
    std::vector<RouterCorrection> layers;  // [num_layers] (a dense layer's is unused)
    int sample_every = 1;                  // capture global tokens t with t % sample_every == 0
    bool apply = true;                     // false: route with the checkpoint's logits (the held-out reference)
    bool capture = true;                   // false: keep no rows (held-out checks)
    std::vector<uint8_t> learn;            // [this rank's rows of the step] 0 = never captured; empty = all rows

    struct Rows {
        std::vector<float> x, z;  // [n, d_model] the layer's normed input, [n, num_experts] its checkpoint logits
    };
    std::vector<Rows> captured;  // [num_layers], emptied by the update

    // Keeps the rows of layer l that the sample and `learn` select. first_token: global index of row 0.
    void keep(int l, std::span<const float> x, std::span<const float> z, int64_t first_token);
    void clear_captured();
};

}  // namespace epmoe
