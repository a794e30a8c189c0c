// `aux_free`: DeepSeek-V3's auxiliary-loss-free balancing (arXiv:2412.19437, section 2.1.2). After each
// coordinator round, for every layer l and expert e:
//     b[l, e] += u * sign(mean_e' load[l, e'] - load[l, e])
// so overloaded experts lose selection score and underloaded ones gain it, by u per round.
// u = policy.aux_free.u, in score units. DeepSeek-V3 uses 1e-3 over ~10^5 steps; our runs are tens to
// hundreds of steps, so the default is 0.01 (see src/base/json.cpp), and `--set policy.aux_free.u=0.001`
// gives the paper's value.
#include <cmath>

#include "epmoe/control/policy.hpp"

namespace epmoe {
namespace {

class AuxFreePolicy final : public Policy {
public:
    explicit AuxFreePolicy(double u) : u_(u) {}
    const char* name() const override { return "aux_free"; }
    void update(const StepObservation& obs, std::span<float> biases) override {
        const int num_experts = obs.num_experts;
        for (int l = 0; l < obs.num_layers; ++l) {
            std::span<const int64_t> load = obs.layer_load(l);
            const double mean = obs.mean_load(l);
            for (int e = 0; e < num_experts; ++e) {
                double gap = mean - static_cast<double>(load[e]);
                double sign = gap > 0 ? 1.0 : (gap < 0 ? -1.0 : 0.0);
                biases[static_cast<size_t>(l) * num_experts + e] += static_cast<float>(u_ * sign);
            }
        }
    }

private:
    double u_;
};

}  // namespace

std::unique_ptr<Policy> make_aux_free_policy(const PolicyConfig& policy, const PolicyContext&) {
    return std::make_unique<AuxFreePolicy>(policy.aux_free.u);
}

}  // namespace epmoe
