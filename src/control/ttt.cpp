#include "epmoe/control/ttt.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "epmoe/base/error.hpp"

namespace epmoe {
namespace {

constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kAdamEps = 1e-8;
constexpr double kMaxRise = 1024;  // a budget raises a weight at most this many times its setting (or 0.1)

// log-softmax of z [E] into out.
void log_softmax(const double* z, int n, double* out) {
    const double max = *std::max_element(z, z + n);
    double sum = 0;
    for (int e = 0; e < n; ++e) sum += std::exp(z[e] - max);
    const double lse = max + std::log(sum);
    for (int e = 0; e < n; ++e) out[e] = z[e] - lse;
}

// y[i] += a x[i], i < n.
__attribute__((target_clones("avx512f", "avx2", "default"))) void add_scaled(double* y, const float* x, double a,
                                                                             int n) {
    for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

// A draw of N(0, 1/d) per element of A, the same on every rank (seeded by the job's seed and the layer).
std::vector<float> initial_a(int d, int rank, uint64_t seed, int layer) {
    std::mt19937_64 rng(seed * 1000003u + static_cast<uint64_t>(layer) + 1);
    std::normal_distribution<double> normal(0.0, 1.0 / std::sqrt(static_cast<double>(d)));
    std::vector<float> a(static_cast<size_t>(d) * rank);
    for (float& v : a) v = static_cast<float>(normal(rng));
    return a;
}

// Mean over the ranks holding expert e of per_rank[r], for every expert: [E].
std::vector<double> over_owners(const std::vector<std::vector<int>>& owners, std::span<const double> per_rank) {
    std::vector<double> out(owners.size(), 0.0);
    for (size_t e = 0; e < owners.size(); ++e) {
        for (int r : owners[e]) out[e] += per_rank[static_cast<size_t>(r)];
        out[e] /= static_cast<double>(owners[e].size());
    }
    return out;
}

}  // namespace

// What one update learns from, summed over ranks: [L, E] kept assignments, [L] rows kept for the update, and per
// rank its joules per expert row and host power of its last measured step and its expert rows of each layer in
// this one (each rank fills its own slot: the sums are exact).
struct TttUpdateStats {
    std::vector<int64_t> counts;  // [L·E + L]
    std::vector<double> ranks;    // [P, 2 + L]
};

namespace {

TttUpdateStats gather_stats(const mpi::Comm& comm, const StepResult& result, const RouterAdaptation& adapt, int num_e,
                            double joules_per_row, double power_w) {
    const size_t num_l = adapt.layers.size(), width = 2 + num_l;
    TttUpdateStats s{std::vector<int64_t>(num_l * num_e + num_l, 0),
                     std::vector<double>(static_cast<size_t>(comm.size()) * width, 0.0)};
    double* mine = &s.ranks[static_cast<size_t>(comm.rank()) * width];
    mine[0] = joules_per_row, mine[1] = power_w;
    for (size_t l = 0; l < num_l && l < result.layers.size(); ++l) {
        const std::vector<int64_t>& load = result.layers[l].expert_load;
        for (size_t e = 0; e < load.size(); ++e) s.counts[l * num_e + e] = load[e];
        s.counts[num_l * num_e + l] = static_cast<int64_t>(adapt.captured[l].z.size() / num_e);
        mine[2 + l] = static_cast<double>(result.layers[l].rows_processed);
    }
    mpi::allreduce<int64_t>(comm, s.counts, mpi::Op::kSum);
    mpi::allreduce<double>(comm, s.ranks, mpi::Op::kSum);  // NaN stays NaN in its own slot only
    return s;
}

// Layer l's c_r = J_r / mean J over ranks, J_r = rank r's joules per expert row (of its last measured step) times
// its rows of layer l in this step; empty when a rank's joules were not measured.
std::vector<double> energy_costs(const TttUpdateStats& s, int num_ranks, size_t num_l, size_t l) {
    std::vector<double> c;
    double mean = 0;
    for (int r = 0; r < num_ranks; ++r) {
        const double* rank = &s.ranks[static_cast<size_t>(r) * (2 + num_l)];
        c.push_back(rank[0] * rank[2 + l]);
        mean += c.back() / num_ranks;
    }
    if (!std::isfinite(mean) || mean <= 0) return {};
    for (double& x : c) x /= mean;
    return c;
}

// The largest host power any rank saw, W (NaN when none was measured).
double peak_power(const TttUpdateStats& s, int num_ranks, size_t num_l) {
    double peak = NAN;
    for (int r = 0; r < num_ranks; ++r) {
        const double w = s.ranks[static_cast<size_t>(r) * (2 + num_l) + 1];
        if (std::isfinite(w)) peak = std::isnan(peak) ? w : std::max(peak, w);
    }
    return peak;
}

}  // namespace

void ttt_layer_sums(const RouterCorrection& c, std::span<const float> x, std::span<const float> z,
                    std::span<const double> g_balance, std::span<const double> g_energy, double w_balance,
                    double w_energy, double w_fidelity, TttSums& sums) {
    const int d = c.d_model, num_e = c.num_experts, r = c.rank;
    const size_t n = z.size() / num_e, da = static_cast<size_t>(d) * r, db = static_cast<size_t>(r) * num_e;
    if (sums.grad.empty()) sums.grad.assign(da + db + num_e, 0.0);
    double *grad_a = sums.grad.data(), *grad_b = grad_a + da, *grad_bias = grad_b + db;
    std::vector<double> u, zp(num_e), z0(num_e), logp(num_e), logp0(num_e), p(num_e), p0(num_e), dz(num_e), du(r);
    c.project(x, u);
    for (size_t t = 0; t < n; ++t) {
        for (int e = 0; e < num_e; ++e) {
            z0[e] = z[t * num_e + e];
            zp[e] = z0[e] + c.bias[e];
            for (int j = 0; j < r; ++j) zp[e] += u[t * r + j] * c.b[static_cast<size_t>(j) * num_e + e];
        }
        log_softmax(zp.data(), num_e, logp.data());
        log_softmax(z0.data(), num_e, logp0.data());
        double pg = 0;
        for (int e = 0; e < num_e; ++e) {
            p[e] = std::exp(logp[e]), p0[e] = std::exp(logp0[e]);
            sums.balance += p[e] * g_balance[e];
            sums.energy += p[e] * g_energy[e];
            if (p0[e] > 0) sums.fidelity += p0[e] * (logp0[e] - logp[e]);
            pg += p[e] * (w_balance * g_balance[e] + w_energy * g_energy[e]);
        }
        for (int e = 0; e < num_e; ++e) {
            dz[e] = p[e] * (w_balance * g_balance[e] + w_energy * g_energy[e] - pg) + w_fidelity * (p[e] - p0[e]);
            grad_bias[e] += dz[e];
        }
        for (int j = 0; j < r; ++j) {
            du[j] = 0;
            for (int e = 0; e < num_e; ++e) {
                grad_b[static_cast<size_t>(j) * num_e + e] += u[t * r + j] * dz[e];
                du[j] += c.b[static_cast<size_t>(j) * num_e + e] * dz[e];
            }
        }
        for (int j = 0; j < r; ++j) add_scaled(&grad_a[static_cast<size_t>(j) * d], &x[t * d], du[j], d);
    }
}

TestTimeRouter::TestTimeRouter(const PolicyConfig::Ttt& config, const ModelShape& shape, std::vector<uint8_t> moe,
                               const Placement& placement, uint64_t seed, std::string energy_source)
    : config_(config),
      num_layers_(shape.num_layers),
      num_experts_(shape.num_experts),
      d_model_(shape.d_model),
      num_ranks_(placement.num_ranks()),
      moe_(std::move(moe)),
      owners_(placement.owners()),
      energy_source_(std::move(energy_source)),
      energy_weight_(config.energy),
      fidelity_weight_(config.fidelity) {
    adapt_.sample_every = config.sample_every;
    adapt_.captured.resize(static_cast<size_t>(num_layers_));
    const size_t params = static_cast<size_t>(d_model_ + num_experts_) * config.rank + num_experts_;
    for (int l = 0; l < num_layers_; ++l) {
        adapt_.layers.push_back({d_model_, num_experts_, config.rank, initial_a(d_model_, config.rank, seed, l),
                                 std::vector<float>(static_cast<size_t>(config.rank) * num_experts_, 0.0f),
                                 std::vector<float>(static_cast<size_t>(num_experts_), 0.0f)});
        m_.emplace_back(params, 0.0);
        v_.emplace_back(params, 0.0);
    }
}

void TestTimeRouter::adam_step(int l, std::span<const double> grad) {
    RouterCorrection& c = adapt_.layers[static_cast<size_t>(l)];
    std::vector<double>& m = m_[static_cast<size_t>(l)];
    std::vector<double>& v = v_[static_cast<size_t>(l)];
    const double t = static_cast<double>(adam_t_);
    const double step = config_.lr * std::sqrt(1 - std::pow(kBeta2, t)) / (1 - std::pow(kBeta1, t));
    const size_t da = c.a.size(), db = c.b.size();
    for (size_t i = 0; i < grad.size(); ++i) {
        m[i] = kBeta1 * m[i] + (1 - kBeta1) * grad[i];
        v[i] = kBeta2 * v[i] + (1 - kBeta2) * grad[i] * grad[i];
        float& p = i < da ? c.a[i] : i < da + db ? c.b[i - da] : c.bias[i - da - db];
        p = static_cast<float>(p - step * m[i] / (std::sqrt(v[i]) + kAdamEps));
    }
}

// g_balance of layer l: (E · f_e + R · mean over e's copies of F_r) / 2, from the step's measured expert loads; a
// rank's share F_r is its experts' loads, each split evenly over the expert's copies (the placement's rule).
std::vector<double> TestTimeRouter::balance_gradient(const TttUpdateStats& s, int l) const {
    const int64_t* load = &s.counts[static_cast<size_t>(l) * num_experts_];
    double assigned = 0;
    for (int e = 0; e < num_experts_; ++e) assigned += static_cast<double>(load[e]);
    std::vector<double> share(static_cast<size_t>(num_ranks_), 0.0);
    for (int e = 0; e < num_experts_; ++e)
        for (int r : owners_[e])
            share[r] +=
                assigned > 0 ? static_cast<double>(load[e]) / assigned / static_cast<double>(owners_[e].size()) : 0.0;
    std::vector<double> g = over_owners(owners_, share);
    for (int e = 0; e < num_experts_; ++e) {
        const double f = assigned > 0 ? static_cast<double>(load[e]) / assigned : 0.0;
        g[e] = 0.5 * (num_experts_ * f + num_ranks_ * g[e]);
    }
    return g;
}

void TestTimeRouter::note_energy(double joules, double power_w, const StepResult& result) {
    double rows = 0;
    for (const LayerResult& l : result.layers) rows += static_cast<double>(l.rows_processed);
    joules_per_row_ = rows > 0 ? joules / rows : NAN;
    power_w_ = power_w;
}

void TestTimeRouter::update(const mpi::Comm& comm, const StepResult& result) {
    const double t0 = mpi::wtime();
    const TttUpdateStats stats = gather_stats(comm, result, adapt_, num_experts_, joules_per_row_, power_w_);
    const size_t num_l = adapt_.layers.size();
    const double power = peak_power(stats, comm.size(), num_l);
    const std::vector<std::vector<double>> cost = energy_signal(comm, stats, power);
    std::vector<std::vector<double>> g_balance(num_l), g_energy(num_l);
    for (size_t l = 0; l < num_l; ++l) {
        if (!moe_[l]) continue;
        g_balance[l] = balance_gradient(stats, static_cast<int>(l));
        g_energy[l] = cost.empty() ? std::vector<double>(num_experts_, 0.0) : over_owners(owners_, cost[l]);
    }
    Json loss;
    for (int it = 0; it < config_.iters; ++it) {
        const Json parts = gradient_step(comm, stats, g_balance, g_energy, cost.empty() ? 0.0 : energy_weight_);
        if (it == 0) loss = parts;
    }
    if (cost.empty()) loss["energy"] = nullptr;
    adapt_.clear_captured();
    ++updates_;
    double norm = 0;
    for (const RouterCorrection& c : adapt_.layers) {
        for (float v : c.b) norm += static_cast<double>(v) * v;
        for (float v : c.bias) norm += static_cast<double>(v) * v;
    }
    last_ = {{"updates", updates_},
             {"loss", loss},
             {"energy_weight", energy_weight_},
             {"energy_source", energy_source_},
             {"peak_power_w", std::isfinite(power) ? Json(power) : Json(nullptr)},
             {"rank_energy_cost", cost.empty() ? Json(nullptr) : Json(cost)},  // [layer][rank]
             {"fidelity_weight", fidelity_weight_},
             {"correction_norm", std::sqrt(norm)},
             {"shrinks", shrinks_},
             {"seconds", mpi::wtime() - t0}};
}

// The energy term's c_r of every layer, [L][P]: each rank's joules in the layer (its rows priced at the joules per
// row of its last measured step) over the mean, plus max(0, power_r / power_w - 1) when a budget is set; empty when
// a rank's joules were not measured, or the ranks are not the placement's (the rank-invariance test). Raises or
// relaxes the energy weight by the newest peak power (`power`).
std::vector<std::vector<double>> TestTimeRouter::energy_signal(const mpi::Comm& comm, const TttUpdateStats& stats,
                                                               double power) {
    const double cap = kMaxRise * std::max(config_.energy, 0.1);
    if (config_.power_w > 0 && power > config_.power_w) {
        energy_weight_ = std::min(2 * std::max(energy_weight_, 0.05), cap);
        if (energy_weight_ == cap && !noted_cap_ && comm.rank() == 0)
            std::fprintf(stderr,
                         "epmoe: ttt: host power %.4g W is still over policy.ttt.power_w %.4g W with the energy weight "
                         "at its cap %.4g: routing does not bring it lower here (ranks that share a host see one "
                         "power)\n",
                         power, config_.power_w, cap);
        noted_cap_ = noted_cap_ || energy_weight_ == cap;
    } else {
        energy_weight_ = std::max(config_.energy, energy_weight_ / 2);
    }
    const size_t num_l = adapt_.layers.size();
    std::vector<std::vector<double>> cost;
    if (comm.size() != num_ranks_) return cost;
    for (size_t l = 0; l < num_l; ++l) {
        if (!moe_[l]) {  // a dense layer runs no expert rows: nothing to price
            cost.emplace_back(static_cast<size_t>(comm.size()), 1.0);
            continue;
        }
        cost.push_back(energy_costs(stats, comm.size(), num_l, l));
        if (cost.back().empty()) return {};
        for (int r = 0; config_.power_w > 0 && r < comm.size(); ++r) {
            const double w = stats.ranks[static_cast<size_t>(r) * (2 + num_l) + 1];
            if (std::isfinite(w)) cost[l][r] += std::max(0.0, w / config_.power_w - 1);
        }
    }
    return cost;
}

// One Adam step of every MoE layer on the kept rows; returns the objective's parts before it (means over the
// MoE layers that kept rows). Collective.
Json TestTimeRouter::gradient_step(const mpi::Comm& comm, const TttUpdateStats& stats,
                                   const std::vector<std::vector<double>>& g_balance,
                                   const std::vector<std::vector<double>>& g_energy, double w_energy) {
    const size_t num_l = adapt_.layers.size();
    const size_t params = static_cast<size_t>(d_model_ + num_experts_) * config_.rank + num_experts_;
    std::vector<double> buf(num_l * (3 + params), 0.0);
    for (size_t l = 0; l < num_l; ++l) {
        if (!moe_[l] || stats.counts[num_l * num_experts_ + l] == 0) continue;
        TttSums sums;
        ttt_layer_sums(adapt_.layers[l], adapt_.captured[l].x, adapt_.captured[l].z, g_balance[l], g_energy[l],
                       config_.balance, w_energy, fidelity_weight_, sums);
        double* out = &buf[l * (3 + params)];
        out[0] = sums.balance, out[1] = sums.energy, out[2] = sums.fidelity;
        std::copy(sums.grad.begin(), sums.grad.end(), out + 3);
    }
    mpi::allreduce<double>(comm, buf, mpi::Op::kSum);
    mpi::bcast<double>(comm, buf, 0);  // every rank steps with rank 0's bits, whatever the reduction order
    ++adam_t_;
    double parts[3] = {0, 0, 0};
    int layers = 0;
    for (size_t l = 0; l < num_l; ++l) {
        const double n = static_cast<double>(stats.counts[num_l * num_experts_ + l]);
        if (!moe_[l] || n == 0) continue;
        double* sums = &buf[l * (3 + params)];
        for (size_t i = 0; i < 3 + params; ++i) sums[i] /= n;
        for (int i = 0; i < 3; ++i) parts[i] += sums[i];
        ++layers;
        adam_step(static_cast<int>(l), std::span<const double>(sums + 3, params));
    }
    for (double& x : parts) x = layers > 0 ? x / layers : NAN;
    return {{"balance", parts[0]},
            {"energy", parts[1]},
            {"fidelity", parts[2]},
            {"total", config_.balance * parts[0] + w_energy * parts[1] + fidelity_weight_ * parts[2]}};
}

void TestTimeRouter::shrink(double factor) {
    for (size_t l = 0; l < adapt_.layers.size(); ++l) {
        for (float& v : adapt_.layers[l].b) v = static_cast<float>(v * factor);
        for (float& v : adapt_.layers[l].bias) v = static_cast<float>(v * factor);
        std::fill(m_[l].begin(), m_[l].end(), 0.0);
        std::fill(v_[l].begin(), v_[l].end(), 0.0);
    }
    adam_t_ = 0;
    fidelity_weight_ = std::min(2 * std::max(fidelity_weight_, 0.1), kMaxRise * std::max(config_.fidelity, 0.1));
    ++shrinks_;
}

double TestTimeRouter::check(int step, double ppl, double ppl0, double seconds) {
    const double delta = ppl / ppl0 - 1;
    const bool over = !(delta <= config_.max_delta_ppl);
    // Over the budget by a little, the correction shrinks a little: to budget / delta of itself, in [0.25, 0.9].
    const double factor = over ? std::clamp(config_.max_delta_ppl / delta, 0.25, 0.9) : 1.0;
    if (over)
        shrink(factor);
    else if (delta < 0.5 * config_.max_delta_ppl)  // well inside: the fidelity weight relaxes toward its setting
        fidelity_weight_ = std::max(config_.fidelity, fidelity_weight_ / 2);
    checks_.push_back({{"step", step},
                       {"ppl", ppl},
                       {"ppl_checkpoint", ppl0},
                       {"delta", delta},
                       {"shrunk", over},
                       {"factor", factor},
                       {"fidelity_weight", fidelity_weight_},
                       {"seconds", seconds}});
    return factor;
}

Json TestTimeRouter::summary() const {
    return {{"rank", config_.rank},
            {"lr", config_.lr},
            {"iters", config_.iters},
            {"weights", {{"balance", config_.balance}, {"energy", config_.energy}, {"fidelity", config_.fidelity}}},
            {"power_w", config_.power_w > 0 ? Json(config_.power_w) : Json(nullptr)},
            {"max_delta_ppl", config_.max_delta_ppl},
            {"energy_source", energy_source_},
            {"energy_weight_final", energy_weight_},
            {"fidelity_weight_final", fidelity_weight_},
            {"updates", updates_},
            {"shrinks", shrinks_},
            {"checks", checks_}};
}

}  // namespace epmoe
