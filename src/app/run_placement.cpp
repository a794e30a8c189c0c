// The placement and policy context of a run (placement.profile is read on rank 0 and broadcast).
#include "app/run_inputs.hpp"

namespace epmoe {

Placement run_placement(const mpi::Comm& world, const Config& config, int num_experts, int num_ranks) {
    std::vector<double> profile;  // [num_experts]
    const bool needs_profile = config.placement.name == "balanced" || config.placement.name == "replicated";
    if (needs_profile && !config.placement.profile.empty()) {
        profile.assign(num_experts, 0.0);
        mpi::all_or_none(world, [&] {
            if (world.rank() == 0) profile = read_load_profile(config.placement.profile, num_experts);
        });
        mpi::bcast<double>(world, profile, 0);
    }
    Placement placement;
    mpi::all_or_none(world, [&] {
        placement =
            Placement::make(config.placement.name, num_experts, num_ranks > 0 ? num_ranks : world.size(), profile,
                            config.placement.replicas);
    });
    return placement;
}

PolicyContext policy_context(const Config& config, const Placement& placement, int num_layers) {
    PolicyContext context;
    context.num_layers = num_layers;
    context.num_experts = placement.num_experts();
    context.num_ranks = placement.num_ranks();
    context.owners = placement.owners();
    context.seed = config.seed;
    context.power_budget_w = config.energy.power_budget_w;
    context.thermal_limit_c = config.energy.thermal_limit_c;
    return context;
}

}  // namespace epmoe
