#include "epmoe/moe/placement.hpp"

#include <algorithm>
#include <fstream>
#include <numeric>

#include "epmoe/base/error.hpp"
#include "epmoe/base/json.hpp"

namespace epmoe {
namespace {

// Expert ids by descending load; equal loads keep the lower id first.
std::vector<int> hottest_first(std::span<const double> load) {
    std::vector<int> order(load.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return load[a] > load[b]; });
    return order;
}

// Longest-processing-time greedy with at most ceil(E / P) experts per rank. Returns [E] owner.
std::vector<int> balanced_owners(std::span<const double> load, int num_ranks) {
    const int num_experts = static_cast<int>(load.size()), cap = (num_experts + num_ranks - 1) / num_ranks;
    std::vector<double> rank_load(num_ranks, 0.0);
    std::vector<int> count(num_ranks, 0), owner(num_experts, 0);
    for (int e : hottest_first(load)) {
        int best = -1;
        for (int r = 0; r < num_ranks; ++r)
            if (count[r] < cap && (best < 0 || rank_load[r] < rank_load[best])) best = r;
        owner[e] = best;
        rank_load[best] += load[e];
        ++count[best];
    }
    return owner;
}

// Adds one copy of each of the `replicas` hottest experts on the least-loaded rank that lacks it.
void add_replicas(std::vector<std::vector<int>>& holders, std::span<const double> load, int num_ranks, int replicas) {
    std::vector<int> order = hottest_first(load);
    for (int i = 0; i < replicas && i < static_cast<int>(order.size()); ++i) {
        std::vector<double> rank_load(num_ranks, 0.0);
        for (size_t e = 0; e < holders.size(); ++e)
            for (int r : holders[e]) rank_load[r] += load[e] / static_cast<double>(holders[e].size());
        const auto& mine = holders[order[i]];
        int best = -1;
        for (int r = 0; r < num_ranks; ++r)
            if (std::find(mine.begin(), mine.end(), r) == mine.end() && (best < 0 || rank_load[r] < rank_load[best]))
                best = r;
        if (best >= 0) holders[order[i]].push_back(best);
    }
}

}  // namespace

std::vector<std::string> placement_names() { return {"contiguous", "round_robin", "balanced", "replicated"}; }

void check_placement_name(const std::string& name) {
    std::string known;
    for (const auto& n : placement_names()) {
        if (n == name) return;
        known += (known.empty() ? "" : ", ") + n;
    }
    fail("config key placement.name = \"", name, "\": unknown placement (known: ", known, ")");
}

Placement Placement::make(const std::string& name, int num_experts, int num_ranks, std::span<const double> profile,
                          int replicas) {
    check_placement_name(name);
    Placement p;
    p.name_ = name;
    p.num_ranks_ = num_ranks;
    p.replicas_.resize(num_experts);
    const bool needs_profile = name == "balanced" || name == "replicated";
    if (needs_profile && profile.empty())
        fail("placement.name = \"", name,
             "\" needs a load profile: set placement.profile to an earlier run's results "
             "directory (epmoe compare passes its none/contiguous run)");
    EPMOE_ASSERT(profile.empty() || static_cast<int>(profile.size()) == num_experts);
    std::vector<int> owner = name == "balanced" ? balanced_owners(profile, num_ranks) : std::vector<int>();
    for (int e = 0; e < num_experts; ++e) {
        int r = 0;
        if (name == "contiguous" || name == "replicated")
            r = static_cast<int>(static_cast<int64_t>(e) * num_ranks / num_experts);
        else if (name == "round_robin")
            r = e % num_ranks;
        else if (name == "balanced")
            r = owner[e];
        else
            EPMOE_ASSERT(false);  // check_placement_name knows every name handled here
        p.replicas_[e] = {r};
    }
    if (name == "replicated") add_replicas(p.replicas_, profile, num_ranks, replicas);
    std::vector<int> held(num_ranks, 0);  // copies per rank
    for (const auto& ranks : p.replicas_)
        for (int r : ranks) ++held[r];
    p.first_slot_.assign(num_ranks + 1, 0);
    std::partial_sum(held.begin(), held.end(), p.first_slot_.begin() + 1);
    std::vector<int> next(p.first_slot_.begin(), p.first_slot_.end() - 1);
    p.slots_.resize(num_experts);
    for (int e = 0; e < num_experts; ++e)  // ascending e: each rank's slots come in expert order
        for (int r : p.replicas_[e]) p.slots_[e].push_back(next[r]++);
    return p;
}

int Placement::slot(int rank, int expert) const {
    const auto& ranks = replicas_[expert];
    auto it = std::find(ranks.begin(), ranks.end(), rank);
    EPMOE_ASSERT(it != ranks.end());
    return slots_[expert][static_cast<size_t>(it - ranks.begin())];
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
    std::vector<int> out(static_cast<size_t>(first_slot_[rank + 1] - first_slot_[rank]));
    for (int e = 0; e < num_experts(); ++e)
        for (size_t i = 0; i < replicas_[e].size(); ++i)
            if (replicas_[e][i] == rank) out[static_cast<size_t>(slots_[e][i] - first_slot_[rank])] = e;
    return out;
}

std::vector<double> read_load_profile(const std::string& dir, int num_experts) {
    const std::string path = dir + "/metrics.jsonl";
    std::ifstream in(path);
    if (!in) fail("placement.profile: cannot read ", path, " (an earlier run's results directory is needed)");
    std::vector<double> load(num_experts, 0.0);
    int lines = 0;
    for (std::string line; std::getline(in, line);) {
        if (line.empty()) continue;
        try {
            const Json parsed = Json::parse(line);
            for (const auto& layer : parsed.at("layers")) {
                const auto& row = layer.at("expert_load");
                if (static_cast<int>(row.size()) != num_experts)
                    fail(path, ": expert_load has ", row.size(), " experts, this model has ", num_experts);
                for (int e = 0; e < num_experts; ++e) load[e] += row[e].get<double>();
            }
        } catch (const Json::exception& e) {
            fail(path, ": line ", lines + 1, " is not a metrics line (", e.what(), ")");
        }
        ++lines;
    }
    if (lines == 0) fail(path, ": no metrics lines");
    return load;
}

}  // namespace epmoe
