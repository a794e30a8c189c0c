// `prev_batch`: biases predicted from the history of load distributions. Per layer it keeps an
// exponential moving average of the load fractions, p[e] <- alpha * load[e] / sum(load) + (1 - alpha) * p[e]
// (the first round sets p to the fractions). When the predicted imbalance max(p) / mean(p) exceeds
// `threshold`, it acts: b[e] += gain * (1/E - p[e]) (score units); below the threshold biases stay.
// Parameters: policy.prev_batch.{alpha, threshold, gain}.
#include <algorithm>

#include "epmoe/control/policy.hpp"

namespace epmoe {
namespace {

class PrevBatchPolicy final : public Policy {
public:
    PrevBatchPolicy(double alpha, double threshold, double gain) : alpha_(alpha), threshold_(threshold), gain_(gain) {}
    const char* name() const override { return "prev_batch"; }
    void update(const StepObservation& obs, std::span<float> biases) override {
        const int num_experts = obs.num_experts;
        const bool first = ema_.empty();
        ema_.resize(obs.expert_load.size(), 0.0);
        for (int l = 0; l < obs.num_layers; ++l) {
            const size_t row = static_cast<size_t>(l) * num_experts;
            double total = 0;
            for (int e = 0; e < num_experts; ++e) total += static_cast<double>(obs.expert_load[row + e]);
            if (total <= 0) continue;
            double peak = 0;
            for (int e = 0; e < num_experts; ++e) {
                double frac = static_cast<double>(obs.expert_load[row + e]) / total;
                ema_[row + e] = first ? frac : alpha_ * frac + (1 - alpha_) * ema_[row + e];
                peak = std::max(peak, ema_[row + e]);
            }
            if (peak * num_experts <= threshold_) continue;  // max / mean of p, with mean(p) = 1/E
            for (int e = 0; e < num_experts; ++e)
                biases[row + e] += static_cast<float>(gain_ * (1.0 / num_experts - ema_[row + e]));
        }
    }

private:
    double alpha_, threshold_, gain_;
    std::vector<double> ema_;  // [num_layers, num_experts] predicted load fractions
};

}  // namespace

std::unique_ptr<Policy> make_prev_batch_policy(const PolicyConfig& policy, const PolicyContext&) {
    return std::make_unique<PrevBatchPolicy>(policy.prev_batch.alpha, policy.prev_batch.threshold,
                                             policy.prev_batch.gain);
}

}  // namespace epmoe
