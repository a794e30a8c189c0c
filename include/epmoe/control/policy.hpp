// Routing policies: turn what the coordinator gathered into selection biases for the next step.
// Pure compute; no MPI. Biases are in score units (softmax probabilities or sigmoid scores, both in
// [0, 1]) and only select experts; the gate weights always come from the unbiased scores.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "epmoe/base/config.hpp"

namespace epmoe {

// What the coordinator measured over the steps since its last call (rank 0's view).
struct StepObservation {
    int step = 0;   // last step covered
    int round = 0;  // coordinator round index, 0-based
    int num_layers = 0, num_experts = 0;
    std::vector<int64_t> expert_load;  // [num_layers, num_experts] kept assignments over all ranks
    std::vector<double> rank_joules;   // [num_ranks] attributed joules (empty when not measured)
    std::vector<double> rank_busy_s;   // [num_ranks] busy seconds
    std::vector<double> rank_rows;     // [num_ranks] expert rows run, summed over layers (empty = unknown)
    std::vector<double> rank_power_w;  // [num_ranks] host power seen by the rank, W (NaN = not measured)
    std::vector<double> rank_temp_c;   // [num_ranks] host temperature seen by the rank, deg C (NaN = not measured)

    // Layer l's loads: [num_experts].
    std::span<const int64_t> layer_load(int l) const {
        return std::span<const int64_t>(expert_load).subspan(static_cast<size_t>(l) * num_experts, num_experts);
    }
    // Mean load over layer l's experts.
    double mean_load(int l) const {
        double sum = 0;
        for (int64_t x : layer_load(l)) sum += static_cast<double>(x);
        return sum / num_experts;
    }
};

// What a policy knows about the job when it is built.
struct PolicyContext {
    int num_layers = 0, num_experts = 0, num_ranks = 1;
    std::vector<std::vector<int>> owners;  // [num_experts] -> ranks holding a copy (from the placement)
    uint64_t seed = 0;                     // for policies that draw random numbers
    double power_budget_w = 0;             // energy.power_budget_w: per-host budget, W; 0 = none
    double thermal_limit_c = 0;            // energy.thermal_limit_c: deg C to steer below; 0 = none
};

class Policy {
public:
    virtual ~Policy() = default;
    virtual const char* name() const = 0;
    // Updates biases [num_layers, num_experts] in place from the newest observation.
    virtual void update(const StepObservation& obs, std::span<float> biases) = 0;
};

// The policy named policy.name with its policy.<name>.* parameters; fails naming policy.name when unknown.
std::unique_ptr<Policy> make_policy(const PolicyConfig& policy, const PolicyContext& context);

// The names of the registered policies, in table order.
std::vector<std::string> policy_names();

// Fails naming policy.name and the known names when `name` is not a registered policy.
void check_policy_name(const std::string& name);

}  // namespace epmoe
