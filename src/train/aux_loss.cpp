#include "epmoe/train/aux_loss.hpp"

#include <algorithm>
#include <cmath>

namespace epmoe {
namespace {

// softmax of one row of logits, in double.
void softmax_row(const float* logits, int n, std::vector<double>& p) {
    p.resize(static_cast<size_t>(n));
    double max = logits[0], sum = 0;
    for (int e = 1; e < n; ++e) max = std::max(max, static_cast<double>(logits[e]));
    for (int e = 0; e < n; ++e) sum += p[e] = std::exp(static_cast<double>(logits[e]) - max);
    for (double& x : p) x /= sum;
}

}  // namespace

AuxLoss::AuxLoss(const mpi::Comm& comm, std::span<const MoeBlockSaved* const> layers, int num_experts, int top_k,
                 int64_t global_tokens)
    : num_experts_(num_experts) {
    const size_t e_count = static_cast<size_t>(num_experts);
    // [0, E): assignments per expert; [E, 2E): summed probabilities; then dropped and assigned slots.
    std::vector<double> sums(2 * e_count + 2, 0.0);
    std::vector<double> p;
    for (const MoeBlockSaved* l : layers) {
        const int64_t n = l->routing.num_tokens();
        for (int64_t t = 0; t < n; ++t) {
            softmax_row(&l->logits[static_cast<size_t>(t) * e_count], num_experts, p);
            for (size_t e = 0; e < e_count; ++e) sums[e_count + e] += p[e];
            for (int k = 0; k < top_k; ++k) sums[static_cast<size_t>(l->routing.expert_ids[t * top_k + k])] += 1;
        }
        for (uint8_t kept : l->kept) sums[2 * e_count] += kept ? 0 : 1;
        sums[2 * e_count + 1] += static_cast<double>(l->kept.size());
    }
    mpi::allreduce<double>(comm, sums, mpi::Op::kSum);
    const double rows = static_cast<double>(layers.size()) * static_cast<double>(global_tokens);
    g_.assign(e_count, 0.0);
    if (rows == 0) return;
    for (size_t e = 0; e < e_count; ++e) {
        const double f = sums[e] / rows, mean_p = sums[e_count + e] / rows;
        value_ += num_experts * f * mean_p;
        g_[e] = num_experts * f / rows;
    }
    drop_rate_ = sums[2 * e_count + 1] > 0 ? sums[2 * e_count] / sums[2 * e_count + 1] : 0.0;
}

void AuxLoss::add_gradient(const MoeBlockSaved& layer, double coef, std::span<float> dlogits) const {
    if (coef == 0) return;
    const size_t e_count = static_cast<size_t>(num_experts_);
    std::vector<double> p;
    for (int64_t t = 0; t < layer.routing.num_tokens(); ++t) {
        softmax_row(&layer.logits[static_cast<size_t>(t) * e_count], num_experts_, p);
        double dot = 0;
        for (size_t e = 0; e < e_count; ++e) dot += p[e] * g_[e];
        for (size_t e = 0; e < e_count; ++e)  // softmax's backward: p_j (g_j - sum_e p_e g_e)
            dlogits[static_cast<size_t>(t) * e_count + e] += static_cast<float>(coef * p[e] * (g_[e] - dot));
    }
}

}  // namespace epmoe
