// name -> factory table of the routing policies (one file per policy in src/control/policy/).
#include <utility>

#include "epmoe/base/error.hpp"
#include "epmoe/control/policy.hpp"

namespace epmoe {

using PolicyFactory = std::unique_ptr<Policy> (*)(const PolicyConfig&, const PolicyContext&);
std::unique_ptr<Policy> make_none_policy(const PolicyConfig&, const PolicyContext&);
std::unique_ptr<Policy> make_aux_free_policy(const PolicyConfig&, const PolicyContext&);
std::unique_ptr<Policy> make_prev_batch_policy(const PolicyConfig&, const PolicyContext&);
std::unique_ptr<Policy> make_energy_policy(const PolicyConfig&, const PolicyContext&);
std::unique_ptr<Policy> make_round_robin_policy(const PolicyConfig&, const PolicyContext&);
std::unique_ptr<Policy> make_random_policy(const PolicyConfig&, const PolicyContext&);
std::unique_ptr<Policy> make_balanced_policy(const PolicyConfig&, const PolicyContext&);
std::unique_ptr<Policy> make_temperature_policy(const PolicyConfig&, const PolicyContext&);
std::unique_ptr<Policy> make_ttt_policy(const PolicyConfig&, const PolicyContext&);

namespace {

const std::pair<const char*, PolicyFactory> kPolicies[] = {
    {"none", make_none_policy},
    {"aux_free", make_aux_free_policy},
    {"prev_batch", make_prev_batch_policy},
    {"energy", make_energy_policy},
    {"round_robin", make_round_robin_policy},
    {"random", make_random_policy},
    {"balanced", make_balanced_policy},
    {"temperature", make_temperature_policy},
    {"ttt", make_ttt_policy},
};

}  // namespace

std::vector<std::string> policy_names() {
    std::vector<std::string> out;
    for (const auto& entry : kPolicies) out.emplace_back(entry.first);
    return out;
}

std::unique_ptr<Policy> make_policy(const PolicyConfig& policy, const PolicyContext& context) {
    check_policy_name(policy.name);
    for (const auto& [name, factory] : kPolicies)
        if (policy.name == name) return factory(policy, context);
    EPMOE_ASSERT(false);
}

void check_policy_name(const std::string& name) {
    std::string known;
    for (const auto& entry : kPolicies) {
        if (name == entry.first) return;
        known += (known.empty() ? "" : ", ") + std::string(entry.first);
    }
    fail("config key policy.name = \"", name, "\": unknown policy (known: ", known, ")");
}

}  // namespace epmoe
