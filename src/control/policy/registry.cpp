// name -> factory table of the routing policies (one file per policy in src/control/policy/).
#include <utility>

#include "epmoe/base/error.hpp"
#include "epmoe/control/policy.hpp"

namespace epmoe {

using PolicyFactory = std::unique_ptr<Policy> (*)(const Config&, const PolicyContext&);
std::unique_ptr<Policy> make_none_policy(const Config&, const PolicyContext&);
std::unique_ptr<Policy> make_aux_free_policy(const Config&, const PolicyContext&);
std::unique_ptr<Policy> make_prev_batch_policy(const Config&, const PolicyContext&);
std::unique_ptr<Policy> make_energy_policy(const Config&, const PolicyContext&);
std::unique_ptr<Policy> make_round_robin_policy(const Config&, const PolicyContext&);
std::unique_ptr<Policy> make_random_policy(const Config&, const PolicyContext&);
std::unique_ptr<Policy> make_balanced_policy(const Config&, const PolicyContext&);
std::unique_ptr<Policy> make_temperature_policy(const Config&, const PolicyContext&);

namespace {

const std::pair<const char*, PolicyFactory> kPolicies[] = {
    {"none", make_none_policy},           {"aux_free", make_aux_free_policy},
    {"prev_batch", make_prev_batch_policy}, {"energy", make_energy_policy},
    {"round_robin", make_round_robin_policy}, {"random", make_random_policy},
    {"balanced", make_balanced_policy},   {"temperature", make_temperature_policy},
};

}  // namespace

std::vector<std::string> policy_names() {
    std::vector<std::string> out;
    for (const auto& entry : kPolicies) out.emplace_back(entry.first);
    return out;
}

double policy_param(const Config& config, const char* policy, const char* key) {
    return config.json.at("policy").at(policy).at(key).get<double>();
}

std::unique_ptr<Policy> make_policy(const Config& config, const PolicyContext& context) {
    std::string known;
    for (const auto& [name, factory] : kPolicies) {
        if (config.policy == name) return factory(config, context);
        known += (known.empty() ? "" : ", ") + std::string(name);
    }
    fail("config key policy.name = \"", config.policy, "\": unknown policy (known: ", known, ")");
}

}  // namespace epmoe
