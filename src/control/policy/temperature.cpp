// `temperature`: a stateless correction in log space, like dividing each expert's popularity by a
// softmax temperature. In every layer, from the last round's loads,
//     b[e] = -t * ln((load[e] + 1) / (mean(load) + 1))
// so an expert twice as popular as average loses t * ln 2 of score, and an unused one gains up to
// t * ln(mean + 1). Parameter: policy.temperature.t (score units).
#include <cmath>

#include "epmoe/control/policy.hpp"

namespace epmoe {
namespace {

class TemperaturePolicy final : public Policy {
public:
    explicit TemperaturePolicy(double t) : t_(t) {}
    const char* name() const override { return "temperature"; }
    void update(const StepObservation& obs, std::span<float> biases) override {
        const int num_experts = obs.num_experts;
        for (int l = 0; l < obs.num_layers; ++l) {
            const size_t row = static_cast<size_t>(l) * num_experts;
            std::span<const int64_t> load = obs.layer_load(l);
            const double mean = obs.mean_load(l);
            for (int e = 0; e < num_experts; ++e)
                biases[row + e] = static_cast<float>(-t_ * std::log((static_cast<double>(load[e]) + 1) / (mean + 1)));
        }
    }

private:
    double t_;
};

}  // namespace

std::unique_ptr<Policy> make_temperature_policy(const PolicyConfig& policy, const PolicyContext&) {
    return std::make_unique<TemperaturePolicy>(policy.temperature.t);
}

}  // namespace epmoe
