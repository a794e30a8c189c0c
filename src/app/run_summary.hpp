// Rank 0's bookkeeping of a run: turns each coordinator report into a metrics.jsonl line, and the
// whole run into summary.json. Pure compute over what was measured; unmeasured figures are null.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "epmoe/base/config.hpp"
#include "epmoe/control/coordinator.hpp"

namespace epmoe {

class RunSummary {
public:
    // moe_layer: [num_layers] 1 for an MoE layer, 0 for a dense one (no routing: kept out of the load figures).
    RunSummary(int num_ranks, std::vector<uint8_t> moe_layer, int num_experts, double expert_flops_per_token);

    // Records the steps (first_step..last_step) one coordinator round covered and returns their metrics line.
    // step_times: rank 0's wall time of each covered step; biases: [L, E] the steps used.
    Json add_round(const CoordinatorReport& report, int first_step, std::span<const double> step_times,
                   std::span<const float> biases);

    // summary.json: every key of the contract. energy_source: rapl | hwmon | estimated | none;
    // energy_details: extra keys for the energy object (reason, estimate coefficients, ...).
    Json summary(const std::string& policy, const std::string& energy_source, const Json& energy_details) const;

    // The human summary printed at the end of a run.
    std::string human(const Json& summary) const;

    int64_t tokens_so_far() const { return tokens_total_; }
    double seconds_so_far() const;

private:
    // Means over MoE layers (dense layers excluded) of each layer's statistic: expert load (max/mean, CV, Gini,
    // normalized entropy) and rank load in rows run (max/mean, CV, Gini, balancedness = mean/max).
    struct LoadStats {
        double max_over_mean = 0, cv = 0, gini = 0, entropy = 0;
        double rank_max_over_mean = 0, rank_cv = 0, rank_gini = 0, balancedness = 0;
    };
    static Json load_json(const LoadStats& s);
    LoadStats load_stats(const CoordinatorReport& report, Json* layers_out) const;
    Json add_energy(const CoordinatorReport& report, double seconds);

    int num_ranks_, num_layers_;
    std::vector<uint8_t> moe_layer_;  // [num_layers]
    int num_experts_;
    double flops_per_token_;
    std::vector<double> step_times_;
    int64_t tokens_total_ = 0;
    double phase_[5] = {0, 0, 0, 0, 0};  // gate, dispatch, expert, combine (mean over ranks), coordinator (rank 0)
    double expert_flops_ = 0, expert_seconds_ = 0;  // summed over ranks
    int64_t dropped_ = 0, assigned_ = 0;
    bool energy_measured_ = true;                 // false once any round lacks a rank's joules
    std::vector<double> rank_joules_;             // [num_ranks] summed over rounds
    double fidelity_[7] = {0, 0, 0, 0, 0, 0, 0};  // RankRecord kChangedSlots..kFidelityS, summed over ranks and rounds
    bool have_first_ = false;
    LoadStats first_, last_;
};

}  // namespace epmoe
