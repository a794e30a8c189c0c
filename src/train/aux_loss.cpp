#include "epmoe/train/aux_loss.hpp"

#include <algorithm>
#include <cmath>

namespace epmoe {
namespace {

// softmax of one row of logits, in double; returns logsumexp of the row.
double softmax_row(const float* logits, int n, std::vector<double>& p) {
    p.resize(static_cast<size_t>(n));
    double max = logits[0], sum = 0;
    for (int e = 1; e < n; ++e) max = std::max(max, static_cast<double>(logits[e]));
    for (int e = 0; e < n; ++e) sum += p[e] = std::exp(static_cast<double>(logits[e]) - max);
    for (double& x : p) x /= sum;
    return max + std::log(sum);
}

}  // namespace

AuxLoss::AuxLoss(const mpi::Comm& comm, std::span<const MoeBlockSaved* const> layers, int num_experts, int top_k,
                 int64_t global_tokens)
    : num_experts_(num_experts) {
    const size_t e_count = static_cast<size_t>(num_experts), n_layers = layers.size();
    // [0, E): assignments per expert; [E, 2E): summed probabilities; then dropped and assigned slots, the summed
    // logsumexp^2 (z-loss) and entropy; then the kept assignments [L, E].
    const size_t dropped = 2 * e_count, slots = dropped + 1, lse2 = dropped + 2, entropy = dropped + 3,
                 load = dropped + 4;
    std::vector<double> sums(load + n_layers * e_count, 0.0);
    std::vector<double> p;
    for (size_t i = 0; i < n_layers; ++i) {
        const MoeBlockSaved* l = layers[i];
        const int64_t n = l->routing.num_tokens();
        for (int64_t t = 0; t < n; ++t) {
            const double lse = softmax_row(&l->logits[static_cast<size_t>(t) * e_count], num_experts, p);
            sums[lse2] += lse * lse;
            for (size_t e = 0; e < e_count; ++e) {
                sums[e_count + e] += p[e];
                sums[entropy] -= p[e] > 0 ? p[e] * std::log(p[e]) : 0.0;
            }
            for (int k = 0; k < top_k; ++k) {
                const size_t e = static_cast<size_t>(l->routing.expert_ids[t * top_k + k]);
                sums[e] += 1;
                sums[load + i * e_count + e] += l->kept[static_cast<size_t>(t * top_k + k)];
            }
        }
        for (uint8_t kept : l->kept) sums[dropped] += kept ? 0 : 1;
        sums[slots] += static_cast<double>(l->kept.size());
    }
    mpi::allreduce<double>(comm, sums, mpi::Op::kSum);
    layer_load_.assign(sums.begin() + static_cast<std::ptrdiff_t>(load), sums.end());
    const double rows = static_cast<double>(n_layers) * static_cast<double>(global_tokens);
    rows_ = rows;
    g_.assign(e_count, 0.0);
    if (rows == 0) return;
    z_value_ = sums[lse2] / rows;
    entropy_ = sums[entropy] / rows;
    for (size_t e = 0; e < e_count; ++e) {
        const double f = sums[e] / rows, mean_p = sums[e_count + e] / rows;
        value_ += num_experts * f * mean_p;
        g_[e] = num_experts * f / rows;
    }
    drop_rate_ = sums[slots] > 0 ? sums[dropped] / sums[slots] : 0.0;
}

double AuxLoss::load_cv() const {
    const size_t e_count = static_cast<size_t>(num_experts_);
    const size_t n_layers = e_count == 0 ? 0 : layer_load_.size() / e_count;
    if (n_layers == 0) return 0.0;
    double cv_sum = 0;
    for (size_t l = 0; l < n_layers; ++l) {
        double mean = 0, var = 0;
        for (size_t e = 0; e < e_count; ++e) mean += layer_load_[l * e_count + e] / static_cast<double>(e_count);
        for (size_t e = 0; e < e_count; ++e)
            var += std::pow(layer_load_[l * e_count + e] - mean, 2) / static_cast<double>(e_count);
        cv_sum += mean > 0 ? std::sqrt(var) / mean : 0.0;
    }
    return cv_sum / static_cast<double>(n_layers);
}

void AuxLoss::add_gradient(const MoeBlockSaved& layer, double coef, double z_coef, std::span<float> dlogits) const {
    if ((coef == 0 && z_coef == 0) || rows_ == 0) return;
    const size_t e_count = static_cast<size_t>(num_experts_);
    std::vector<double> p;
    for (int64_t t = 0; t < layer.routing.num_tokens(); ++t) {
        const double lse = softmax_row(&layer.logits[static_cast<size_t>(t) * e_count], num_experts_, p);
        const double z_scale = z_coef * 2 * lse / rows_;
        double dot = 0;
        for (size_t e = 0; e < e_count; ++e) dot += p[e] * g_[e];
        for (size_t e = 0; e < e_count; ++e)  // softmax's backward: p_j (g_j - sum_e p_e g_e); lse's: p_j
            dlogits[static_cast<size_t>(t) * e_count + e] +=
                static_cast<float>(coef * p[e] * (g_[e] - dot) + z_scale * p[e]);
    }
}

}  // namespace epmoe
