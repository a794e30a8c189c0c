// `epmoe compare`: one job that runs a list of policy x placement pairs on the same model, workload and
// seed, and writes compare.csv and compare.md (each figure also as a ratio to the none/contiguous run).
#pragma once

#include <string>
#include <vector>

#include "epmoe/base/config.hpp"
#include "epmoe/comm/mpi.hpp"

namespace epmoe {

// One policy/placement pair, e.g. {"aux_free", "contiguous"}.
struct ComparePair {
    std::string policy, placement;
    std::string label() const { return policy + "/" + placement; }
};

// Parses "none/contiguous,aux_free/contiguous,..."; fails naming the bad item.
std::vector<ComparePair> parse_pairs(const std::string& text);

// `epmoe compare` with its arguments (after "compare"): --pairs LIST plus every `epmoe run` option.
// Collective. Returns the exit code.
int compare_command(const mpi::Comm& world, const std::vector<std::string>& args);

}  // namespace epmoe
