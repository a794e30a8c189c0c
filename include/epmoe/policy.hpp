// Routing policies: turn what the coordinator gathered into selection biases for the next step.
// Pure compute; no MPI.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "epmoe/config.hpp"

namespace epmoe {

// What the coordinator measured over the steps since its last call (rank 0's view).
struct StepObservation {
    int step = 0;                       // last step covered
    int num_layers = 0, num_experts = 0;
    std::vector<int64_t> expert_load;   // [num_layers, num_experts] kept assignments over all ranks
    std::vector<double> rank_joules;    // [num_ranks] attributed joules (empty when not measured)
    std::vector<double> rank_busy_s;    // [num_ranks] busy seconds
};

class Policy {
public:
    virtual ~Policy() = default;
    virtual const char* name() const = 0;
    // Updates biases [num_layers, num_experts] in place from the newest observation.
    virtual void update(const StepObservation& obs, std::span<float> biases) = 0;
};

// The policy named config.policy; fails naming policy.name when unknown.
std::unique_ptr<Policy> make_policy(const Config& config);

}  // namespace epmoe
