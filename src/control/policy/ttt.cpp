// `ttt`: test-time training of a router correction (control/ttt.hpp). The selection biases stay 0: the
// adaptation is the corrected logits, trained by the job after each step, not a bias rule on rank 0.
#include "epmoe/control/policy.hpp"

namespace epmoe {
namespace {

class TttPolicy final : public Policy {
public:
    const char* name() const override { return "ttt"; }
    void update(const StepObservation&, std::span<float>) override {}
};

}  // namespace

std::unique_ptr<Policy> make_ttt_policy(const PolicyConfig&, const PolicyContext&) {
    return std::make_unique<TttPolicy>();
}

}  // namespace epmoe
