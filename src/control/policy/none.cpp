// `none`: plain top-k, biases stay zero.
#include "epmoe/control/policy.hpp"

namespace epmoe {
namespace {

class NonePolicy final : public Policy {
public:
    const char* name() const override { return "none"; }
    void update(const StepObservation&, std::span<float>) override {}
};

}  // namespace

std::unique_ptr<Policy> make_none_policy(const PolicyConfig&, const PolicyContext&) {
    return std::make_unique<NonePolicy>();
}

}  // namespace epmoe
