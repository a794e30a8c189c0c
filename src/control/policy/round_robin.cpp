// `round_robin`: a load-oblivious rotating preference. At coordinator round i, in layer l, expert
// (i + l) mod E gets bias +strength and every other expert 0. It spreads load over time whatever was
// measured: a baseline for how much fidelity a blind perturbation of that size costs.
// Parameter: policy.round_robin.strength (score units).
#include <algorithm>

#include "epmoe/control/policy.hpp"

namespace epmoe {
namespace {

class RoundRobinPolicy final : public Policy {
public:
    explicit RoundRobinPolicy(double strength) : strength_(strength) {}
    const char* name() const override { return "round_robin"; }
    void update(const StepObservation& obs, std::span<float> biases) override {
        std::fill(biases.begin(), biases.end(), 0.0f);
        for (int l = 0; l < obs.num_layers; ++l)
            biases[static_cast<size_t>(l) * obs.num_experts + (obs.round + l) % obs.num_experts] =
                static_cast<float>(strength_);
    }

private:
    double strength_;
};

}  // namespace

std::unique_ptr<Policy> make_round_robin_policy(const PolicyConfig& policy, const PolicyContext&) {
    return std::make_unique<RoundRobinPolicy>(policy.round_robin.strength);
}

}  // namespace epmoe
