// `--policy ttt`: test-time training of the router correction of moe/router_correction.hpp. After every
// coordinator.every_n_steps-th step, every rank takes the rows its MoE layers kept, and all ranks run
// policy.ttt.iters Adam steps on the same objective, its gradient summed over ranks (so the correction stays the
// same on every rank). Per layer, with p = softmax(z'), p0 = softmax(z) over the N kept rows of all ranks:
//   balance  = (E · sum_e f_e P_e + R · sum_r F_r Q_r) / 2    Switch/HF's auxiliary form on the adapted
//              probabilities: f_e the step's measured share of assignments of expert e, F_r = sum over rank r's
//              experts of f_e / (copies of e) (the placement's R ranks), P_e = mean p_e, Q_r likewise from P;
//              1 at perfect balance. Both depend on the loads over all ranks only: the update is the same
//              whatever the rank count (tests/mpi/test_ttt_mpi.cpp)
//   energy   = sum_r c_r Q_r   c_r = J_r / mean J, J_r rank r's joules in the layer: its rows priced at the
//              joules per row of its last measured step (the energy source is named in the figures); probability
//              moves off the ranks that spend the most, the loaded and the costly (slow, hot, shared); plus max(0,
//              power_r / power_w - 1) under a power budget; absent when nothing was measured. The one term that reads
//              per-rank measurements: with it on, the routing follows what each rank measured
//   fidelity = mean over rows of KL(p0 || p)
//   loss = policy.ttt.balance · balance + w · energy + policy.ttt.fidelity · fidelity, where w starts at
//   policy.ttt.energy and doubles after each update whose host power exceeded policy.ttt.power_w (when > 0),
//   halving back toward policy.ttt.energy once it does not. The fidelity weight is the perplexity budget's
//   multiplier: it doubles at each held-out check over policy.ttt.max_delta_ppl (`epmoe eval`), when the
//   correction also shrinks, and halves back toward policy.ttt.fidelity at each check well inside the budget.
// The correction starts at exactly zero (B = b = 0; A is drawn from the seed, as LoRA does: with A = B = 0
// neither would ever get a gradient), so the first step routes as the checkpoint.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "epmoe/base/config.hpp"
#include "epmoe/base/json.hpp"
#include "epmoe/comm/mpi.hpp"
#include "epmoe/model/forward.hpp"
#include "epmoe/moe/placement.hpp"

namespace epmoe {

// The objective's parts of one layer, summed over this rank's rows (not yet divided by N).
struct TttSums {
    double balance = 0, energy = 0, fidelity = 0;  // sum over rows of <p, g_balance>, <p, g_energy>, KL(p0 || p)
    std::vector<double> grad;                      // [r·d + r·E + E] d(weighted sum)/d(A (as stored), B, b)
};

// Adds one layer's rows to sums. x: [n, d_model] the layer's normed input; z: [n, E] the checkpoint's logits;
// g_balance, g_energy: [E] the gradients of the balance and energy terms with respect to P (the mean adapted
// probabilities); w_balance, w_energy, w_fidelity: the weights of the gradient. Pure.
void ttt_layer_sums(const RouterCorrection& c, std::span<const float> x, std::span<const float> z,
                    std::span<const double> g_balance, std::span<const double> g_energy, double w_balance,
                    double w_energy, double w_fidelity, TttSums& sums);

struct TttUpdateStats;  // what an update gathered from the ranks (ttt.cpp)

class TestTimeRouter {
public:
    // moe: [num_layers] 1 for an MoE layer; placement: which ranks hold each expert (the rank term's groups);
    // energy_source: the job's.
    TestTimeRouter(const PolicyConfig::Ttt& config, const ModelShape& shape, std::vector<uint8_t> moe,
                   const Placement& placement, uint64_t seed, std::string energy_source);

    RouterAdaptation& adaptation() { return adapt_; }
    // The update after a step whose MoE blocks gave `result` (this rank's loads), with the energy last noted.
    // Collective; empties the captured rows.
    void update(const mpi::Comm& comm, const StepResult& result);
    // This rank's joules and host power of a step (NaN: not measured) and the step's result: the joules per expert
    // row the next update's energy term prices rows at.
    void note_energy(double joules, double power_w, const StepResult& result);
    // Drops the captured rows without an update (a step that is not due).
    void skip() { adapt_.clear_captured(); }
    // The perplexity budget was exceeded: B and b scale by `factor`, Adam's moments clear, the fidelity weight
    // doubles.
    void shrink(double factor);
    // The held-out check: records it and, when delta = ppl / ppl0 - 1 > max_delta_ppl, shrinks the correction to
    // max_delta_ppl / delta of itself (in [0.25, 0.9]); well inside the budget (under half of it) the fidelity
    // weight halves back toward policy.ttt.fidelity. Returns the factor the correction was scaled by (1: none).
    double check(int step, double ppl, double ppl0, double seconds);

    // The last update's figures for its metrics line: objective parts, energy weight and source, correction norm.
    Json figures() const { return last_; }
    // summary.json's / eval.json's "ttt": configuration, updates, checks and resets.
    Json summary() const;

private:
    std::vector<double> balance_gradient(const TttUpdateStats& stats, int l) const;
    std::vector<std::vector<double>> energy_signal(const mpi::Comm& comm, const TttUpdateStats& stats, double power);
    Json gradient_step(const mpi::Comm& comm, const TttUpdateStats& stats,
                       const std::vector<std::vector<double>>& g_balance,
                       const std::vector<std::vector<double>>& g_energy, double w_energy);
    void adam_step(int l, std::span<const double> grad);

    PolicyConfig::Ttt config_;
    int num_layers_, num_experts_, d_model_, num_ranks_;
    std::vector<uint8_t> moe_;
    std::vector<std::vector<int>> owners_;
    std::string energy_source_;
    RouterAdaptation adapt_;
    std::vector<std::vector<double>> m_, v_;  // [num_layers][params] Adam's moments
    int64_t adam_t_ = 0, updates_ = 0, shrinks_ = 0;
    double energy_weight_, fidelity_weight_;
    double joules_per_row_ = NAN, power_w_ = NAN;  // note_energy's
    bool noted_cap_ = false;                       // the power budget's note, once
    Json last_, checks_ = Json::array();
};

}  // namespace epmoe
