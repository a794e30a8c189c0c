// `energy`: shifts load away from ranks that run hot, cost-heavy or over budget. For each rank r it
// computes a pressure from what was measured (signals that were not measured are skipped):
//     pressure[r] = max(0, jpr[r] / mean(jpr) - 1,                 jpr = joules per expert row run
//                          power[r] / energy.power_budget_w - 1,    when the budget is > 0
//                          temp[r] / energy.thermal_limit_c - 1)    when the limit is > 0
// An expert's pressure is the mean over the ranks holding it (the placement's owner map). Then, in every
// layer, b[e] -= u * (pressure[e] - mean_e' pressure[e']). When no rank is under pressure the biases
// relax toward 0: b *= (1 - relax). Parameters: policy.energy.{u, relax}.
#include <algorithm>
#include <cmath>

#include "epmoe/control/policy.hpp"

namespace epmoe {
namespace {

// max(0, x / ref - 1) folded into acc; NaN readings and ref <= 0 are skipped.
void add_signal(double& acc, double x, double ref) {
    if (ref > 0 && std::isfinite(x)) acc = std::max(acc, x / ref - 1.0);
}

class EnergyPolicy final : public Policy {
public:
    EnergyPolicy(const PolicyContext& context, double u, double relax)
        : context_(context),
          u_(u),
          relax_(relax),
          budget_w_(context.power_budget_w),
          limit_c_(context.thermal_limit_c) {}
    const char* name() const override { return "energy"; }

    // [num_ranks] pressure of each rank, >= 0.
    std::vector<double> pressures(const StepObservation& obs) const {
        const size_t num_ranks = static_cast<size_t>(context_.num_ranks);
        std::vector<double> jpr(num_ranks, NAN), out(num_ranks, 0.0);
        double mean_jpr = 0;
        int measured = 0;
        if (obs.rank_joules.size() == num_ranks && obs.rank_rows.size() == num_ranks)
            for (size_t r = 0; r < num_ranks; ++r)
                if (obs.rank_rows[r] > 0)
                    jpr[r] = obs.rank_joules[r] / obs.rank_rows[r], mean_jpr += jpr[r], ++measured;
        mean_jpr = measured > 0 ? mean_jpr / measured : 0;
        for (size_t r = 0; r < num_ranks; ++r) {
            add_signal(out[r], jpr[r], mean_jpr);
            if (r < obs.rank_power_w.size()) add_signal(out[r], obs.rank_power_w[r], budget_w_);
            if (r < obs.rank_temp_c.size()) add_signal(out[r], obs.rank_temp_c[r], limit_c_);
        }
        return out;
    }

    void update(const StepObservation& obs, std::span<float> biases) override {
        const int num_experts = obs.num_experts;
        std::vector<double> rank_p = pressures(obs), expert_p(num_experts, 0.0);
        double mean = 0, peak = 0;
        for (int e = 0; e < num_experts; ++e) {
            for (int r : context_.owners[e]) expert_p[e] += rank_p[r] / static_cast<double>(context_.owners[e].size());
            mean += expert_p[e] / num_experts;
            peak = std::max(peak, expert_p[e]);
        }
        for (int l = 0; l < obs.num_layers; ++l)
            for (int e = 0; e < num_experts; ++e) {
                float& b = biases[static_cast<size_t>(l) * num_experts + e];
                b = peak > 0 ? b - static_cast<float>(u_ * (expert_p[e] - mean)) : static_cast<float>(b * (1 - relax_));
            }
    }

private:
    PolicyContext context_;
    double u_, relax_, budget_w_, limit_c_;
};

}  // namespace

std::unique_ptr<Policy> make_energy_policy(const PolicyConfig& policy, const PolicyContext& context) {
    return std::make_unique<EnergyPolicy>(context, policy.energy.u, policy.energy.relax);
}

}  // namespace epmoe
