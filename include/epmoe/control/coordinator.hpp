// Rank 0's coordinator: after a step it gathers one fixed-size record per rank and the [L, E] load
// histograms, runs the policy, and broadcasts the biases for the next step. All collective.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "epmoe/comm/mpi.hpp"
#include "epmoe/control/policy.hpp"
#include "epmoe/moe/fidelity.hpp"

namespace epmoe {

// The fixed-size record one rank sends rank 0: kFixed fields, then rows processed per layer.
struct RankRecord {
    // kChangedSlots..kFidelityS: the step's FidelityCounts (changed/compared assignments and tokens,
    // sampled squared output distance and reference norm, fidelity seconds), summed like times.
    enum Field {
        kTokens,
        kGate,
        kDispatch,
        kExpert,
        kCombine,
        kCompute,
        kExpertFlops,
        kJoules,
        kHostJoules,
        kPowerW,
        kTempC,
        kChangedSlots,
        kSlots,
        kChangedTokens,
        kFidelityTokens,
        kDiffSq,
        kRefSq,
        kFidelityS,
        kSentBytesOnHost,   // LayerResult::sent_bytes_on_host, summed over layers
        kSentBytesOffHost,  // LayerResult::sent_bytes_off_host, summed over layers
        kRowsRun,           // LayerResult::rows_run, summed over layers
        kFixed
    };
    std::vector<double> values;  // [kFixed + num_layers]; energy fields are NaN when not measured;
                                 // kHostJoules only on the rank that reads its host

    explicit RankRecord(int num_layers);
    double& operator[](Field f) { return values[f]; }
    double operator[](Field f) const { return values[f]; }
    double& rows(int layer) { return values[kFixed + layer]; }
    double rows(int layer) const { return values[kFixed + layer]; }
    // Adds another record's times, tokens, FLOPs and rows; energy adds; power and temperature take the newest.
    void accumulate(const RankRecord& other);
    // Stores one step's fidelity counts in kChangedSlots..kFidelityS.
    void set_fidelity(const FidelityCounts& f);
};

// One layer's routed load on this rank in one step: what the coordinator sums over ranks.
struct LayerLoad {
    std::span<const int64_t> expert_load;  // [num_experts] kept assignments of this rank's tokens, by expert
    int64_t dropped = 0;                   // assignments dropped by capacity
    int64_t assigned = 0;                  // assignments of this rank's tokens (num_tokens * top_k)
};

// What rank 0 knows after a coordinator round (other ranks get an empty report).
struct CoordinatorReport {
    std::vector<RankRecord> ranks;     // [num_ranks]
    std::vector<int64_t> expert_load;  // [num_layers, num_experts], summed over ranks
    std::vector<int64_t> dropped;      // [num_layers]
    std::vector<int64_t> assigned;     // [num_layers]
    double seconds = 0;                // this round on rank 0
};

class Coordinator {
public:
    Coordinator(const mpi::Comm& comm, int num_layers, int num_experts, std::unique_ptr<Policy> policy);

    // Adds one step's local results to what the next round will send. layers: [num_layers].
    void record(const RankRecord& record, std::span<const LayerLoad> layers);
    // One round (collective): gather, reduce, policy on rank 0, broadcast biases. Clears the pending state.
    CoordinatorReport round(int step);
    // Selection biases for the next step: [num_layers, num_experts].
    std::span<const float> biases() const { return biases_; }

private:
    const mpi::Comm& comm_;
    int num_layers_, num_experts_;
    std::unique_ptr<Policy> policy_;
    int rounds_ = 0;             // coordinator rounds done
    std::vector<float> biases_;  // [L, E]
    RankRecord pending_;
    std::vector<int64_t> pending_load_;  // [L, E] then [L] dropped, then [L] assigned
};

}  // namespace epmoe
