// `balanced`: a stateless proportional correction from the last round's loads. In every layer,
//     b[e] = clamp(-strength * (load[e] / mean(load) - 1), -strength, strength)
// Unlike aux_free (which integrates), it forgets: the bias reacts only to the last round, so it leaves
// some imbalance but never drifts. Parameter: policy.balanced.strength (score units).
#include <algorithm>

#include "epmoe/control/policy.hpp"

namespace epmoe {
namespace {

class BalancedPolicy final : public Policy {
public:
    explicit BalancedPolicy(double strength) : strength_(strength) {}
    const char* name() const override { return "balanced"; }
    void update(const StepObservation& obs, std::span<float> biases) override {
        const int num_experts = obs.num_experts;
        for (int l = 0; l < obs.num_layers; ++l) {
            const size_t row = static_cast<size_t>(l) * num_experts;
            std::span<const int64_t> load = obs.layer_load(l);
            const double mean = obs.mean_load(l);
            for (int e = 0; e < num_experts; ++e) {
                double b = mean > 0 ? -strength_ * (static_cast<double>(load[e]) / mean - 1) : 0.0;
                biases[row + e] = static_cast<float>(std::clamp(b, -strength_, strength_));
            }
        }
    }

private:
    double strength_;
};

}  // namespace

std::unique_ptr<Policy> make_balanced_policy(const PolicyConfig& policy, const PolicyContext&) {
    return std::make_unique<BalancedPolicy>(policy.balanced.strength);
}

}  // namespace epmoe
