// name -> factory table of the routing policies.
#include <functional>
#include <utility>

#include "epmoe/error.hpp"
#include "epmoe/policy.hpp"

namespace epmoe {

std::unique_ptr<Policy> make_none_policy(const Config& config);

std::unique_ptr<Policy> make_policy(const Config& config) {
    using Factory = std::unique_ptr<Policy> (*)(const Config&);
    static const std::pair<const char*, Factory> kPolicies[] = {
        {"none", make_none_policy},
    };
    std::string known;
    for (const auto& [name, factory] : kPolicies) {
        if (config.policy == name) return factory(config);
        known += (known.empty() ? "" : ", ") + std::string(name);
    }
    fail("config key policy.name = \"", config.policy, "\": unknown policy (known: ", known, ")");
}

}  // namespace epmoe
