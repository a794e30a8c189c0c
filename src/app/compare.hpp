// `epmoe compare`: one job that runs a list of policy x placement pairs on the same model, workload and
// seed, and writes compare.csv and compare.md (each figure also as a ratio to the none/contiguous run).
#pragma once

#include <string>
#include <vector>

#include "epmoe/base/config.hpp"
#include "epmoe/base/json.hpp"
#include "epmoe/comm/mpi.hpp"

namespace epmoe {

// One policy/placement pair, e.g. {"aux_free", "contiguous"}.
struct ComparePair {
    std::string policy, placement;
    std::string label() const { return policy + "/" + placement; }
};

// Parses "none/contiguous,aux_free/contiguous,..."; fails naming the bad item.
std::vector<ComparePair> parse_pairs(const std::string& text);

// How compare measures: warm-up steps run first and left out of every figure, and repeats of each pair.
struct CompareOptions {
    int warmup = 1;   // --warmup N, >= 0
    int repeats = 3;  // --repeats R, >= 1; pairs run in the order ABC ABC ...
    bool eval = false;  // --mode eval: each run is `epmoe eval` (perplexity columns ppl and delta_ppl)
};

// The pairs `epmoe compare` runs without --pairs.
extern const char* const kDefaultComparePairs;

// `epmoe compare`: runs each pair on base's model, workload and seed (base.workload.steps timed steps after
// options.warmup; with options.eval, `epmoe eval` over base.text's tokens), options.repeats times, interleaved, none/contiguous first (the baseline, and the load profile
// of balanced/replicated), and writes compare.csv and compare.md. Collective. Returns the exit code.
int compare(const mpi::Comm& world, const Config& base, std::vector<ComparePair> pairs, const CompareOptions& options);

}  // namespace epmoe
