// `random`: load-oblivious noise. At coordinator round i, b[l, e] = strength * (2 U - 1) with U uniform
// in [0, 1) drawn from (seed, i, l, e), so a rerun draws the same biases. It measures the fidelity cost
// of a perturbation with no balancing intent. Parameter: policy.random.strength (score units).
#include "epmoe/control/policy.hpp"
#include "epmoe/model/synthetic.hpp"

namespace epmoe {
namespace {

class RandomPolicy final : public Policy {
public:
    RandomPolicy(double strength, uint64_t seed) : strength_(strength), seed_(seed) {}
    const char* name() const override { return "random"; }
    void update(const StepObservation& obs, std::span<float> biases) override {
        for (int l = 0; l < obs.num_layers; ++l)
            for (int e = 0; e < obs.num_experts; ++e)
                biases[static_cast<size_t>(l) * obs.num_experts + e] = static_cast<float>(
                    strength_ *
                    (2.0 * hash_uniform(seed_ ^ 0x7261'6e64ULL, static_cast<uint64_t>(obs.round), l, e) - 1.0));
    }

private:
    double strength_;
    uint64_t seed_;
};

}  // namespace

std::unique_ptr<Policy> make_random_policy(const PolicyConfig& policy, const PolicyContext& context) {
    return std::make_unique<RandomPolicy>(policy.random.strength, context.seed);
}

}  // namespace epmoe
