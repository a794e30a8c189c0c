// The routing the benchmarks feed epmoe's dispatch path: top-2 of num_experts per token, two distinct experts,
// weights w and 1 - w with w uniform in [0.5, 1). Uniform: experts equally likely. Skewed: expert e drawn with
// probability ~ (e + 1)^-1.2 (Zipf), so the ranks holding the low experts receive more rows.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "epmoe/moe/router.hpp"

namespace epmoe::bench {

inline Routing top2_routing(int64_t tokens, int num_experts, bool skewed, unsigned seed) {
    std::mt19937 gen(seed);
    std::vector<double> p(num_experts);
    for (int e = 0; e < num_experts; ++e) p[e] = skewed ? std::pow(e + 1.0, -1.2) : 1.0;
    std::discrete_distribution<int> pick(p.begin(), p.end());
    Routing r;
    r.top_k = 2;
    for (int64_t t = 0; t < tokens; ++t) {
        int first = pick(gen), second = first;
        while (second == first) second = pick(gen);
        float w = std::uniform_real_distribution<float>(0.5f, 1.0f)(gen);
        r.expert_ids.insert(r.expert_ids.end(), {first, second});
        r.weights.insert(r.weights.end(), {w, 1.0f - w});
    }
    return r;
}

}  // namespace epmoe::bench
