// `none`: plain top-k, biases stay zero. `ttt` too: its adaptation is the router correction the job trains after
// each step (control/ttt.hpp), not a bias rule on rank 0.
#include "epmoe/control/policy.hpp"

namespace epmoe {
namespace {

class NoBiasPolicy final : public Policy {
public:
    explicit NoBiasPolicy(const char* name) : name_(name) {}
    const char* name() const override { return name_; }
    void update(const StepObservation&, std::span<float>) override {}

private:
    const char* name_;
};

}  // namespace

std::unique_ptr<Policy> make_none_policy(const PolicyConfig&, const PolicyContext&) {
    return std::make_unique<NoBiasPolicy>("none");
}

std::unique_ptr<Policy> make_ttt_policy(const PolicyConfig&, const PolicyContext&) {
    return std::make_unique<NoBiasPolicy>("ttt");
}

}  // namespace epmoe
