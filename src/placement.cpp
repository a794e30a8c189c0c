#include "epmoe/placement.hpp"

#include <algorithm>

#include "epmoe/error.hpp"

namespace epmoe {

Placement Placement::make(const std::string& name, int num_experts, int num_ranks) {
    Placement p;
    p.name_ = name;
    p.num_ranks_ = num_ranks;
    p.replicas_.resize(num_experts);
    for (int e = 0; e < num_experts; ++e) {
        int owner = 0;
        if (name == "contiguous") owner = static_cast<int>(static_cast<int64_t>(e) * num_ranks / num_experts);
        else if (name == "round_robin") owner = e % num_ranks;
        else fail("placement.name = \"", name, "\": unknown placement (contiguous, round_robin)");
        p.replicas_[e] = {owner};
    }
    return p;
}

int Placement::rank_for(int expert, int64_t global_token) const {
    const auto& ranks = replicas_[expert];
    return ranks[static_cast<size_t>(global_token % static_cast<int64_t>(ranks.size()))];
}

bool Placement::owns(int rank, int expert) const {
    const auto& ranks = replicas_[expert];
    return std::find(ranks.begin(), ranks.end(), rank) != ranks.end();
}

std::vector<int> Placement::experts_of(int rank) const {
    std::vector<int> out;
    for (int e = 0; e < num_experts(); ++e)
        if (owns(rank, e)) out.push_back(e);
    return out;
}

}  // namespace epmoe
