// The router losses of training (src/train/aux_loss.cpp) at 1-4 ranks: HF's load-balancing loss and the ST-MoE
// router z-loss over a global batch spread over the ranks, against a double-precision transcription of their
// formulas over every row, and their gradient against central finite differences of that transcription (the
// routing, hence F, held fixed as the backward holds it); and the figures train_log.jsonl takes from them (each
// layer's load, its mean coefficient of variation, the router's entropy).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "epmoe/comm/mpi.hpp"
#include "epmoe/train/aux_loss.hpp"

namespace epmoe {
namespace {

constexpr int kTokens = 11, kExperts = 5, kTopK = 2, kLayers = 2;

// Layer l's logits of every token of the global batch, [kTokens, kExperts], the same on every rank.
std::vector<double> global_logits(int l) {
    std::mt19937_64 rng(100 + l);
    std::normal_distribution<double> n(0.0, 1.5);
    std::vector<double> z(kTokens * kExperts);
    for (double& x : z) x = n(rng);
    return z;
}

// The top-k of one row (descending, ties to the lower index).
std::vector<int> top_k(const double* row) {
    std::vector<int> idx(kExperts);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return row[a] > row[b]; });
    idx.resize(kTopK);
    return idx;
}

// aux_coef * aux + z_coef * z over every layer's rows, in double, the routing of `routes` held fixed.
double reference(const std::vector<std::vector<double>>& z, const std::vector<std::vector<int>>& routes,
                 double aux_coef, double z_coef) {
    std::vector<double> f(kExperts, 0.0), p(kExperts, 0.0);
    double zsum = 0;
    for (int l = 0; l < kLayers; ++l)
        for (int t = 0; t < kTokens; ++t) {
            const double* row = &z[l][t * kExperts];
            const double max = *std::max_element(row, row + kExperts);
            double s = 0;
            for (int e = 0; e < kExperts; ++e) s += std::exp(row[e] - max);
            for (int e = 0; e < kExperts; ++e) p[e] += std::exp(row[e] - max) / s;
            zsum += std::pow(max + std::log(s), 2);
            for (int e : routes[l * kTokens + t]) f[e] += 1;
        }
    const double rows = kLayers * kTokens;
    double aux = 0;
    for (int e = 0; e < kExperts; ++e) aux += kExperts * (f[e] / rows) * (p[e] / rows);
    return aux_coef * aux + z_coef * zsum / rows;
}

TEST(RouterLosses, ValuesAndGradientMatchTheFormulasAtEveryRankCount) {
    mpi::Comm world(MPI_COMM_WORLD);
    const int first = world.rank() * kTokens / world.size(), last = (world.rank() + 1) * kTokens / world.size();
    std::vector<std::vector<double>> z;
    std::vector<std::vector<int>> routes;
    std::vector<MoeBlockSaved> saved(kLayers);
    for (int l = 0; l < kLayers; ++l) {
        z.push_back(global_logits(l));
        for (int t = 0; t < kTokens; ++t) routes.push_back(top_k(&z[l][t * kExperts]));
        saved[l].routing.top_k = kTopK;
        for (int t = first; t < last; ++t) {
            for (int e = 0; e < kExperts; ++e) saved[l].logits.push_back(static_cast<float>(z[l][t * kExperts + e]));
            for (int e : routes[l * kTokens + t]) saved[l].routing.expert_ids.push_back(e);
            for (int k = 0; k < kTopK; ++k) saved[l].kept.push_back(1);
        }
    }
    // The reference sees the float logits the ranks hold.
    for (auto& layer : z)
        for (double& x : layer) x = static_cast<float>(x);
    std::vector<const MoeBlockSaved*> layers;
    for (const auto& s : saved) layers.push_back(&s);
    const AuxLoss loss(world, layers, kExperts, kTopK, kTokens);
    EXPECT_NEAR(loss.value(), reference(z, routes, 1, 0), 1e-12);
    EXPECT_NEAR(loss.z_value(), reference(z, routes, 0, 1), 1e-12);
    EXPECT_GT(loss.z_value(), 0.1);
    // The logged figures: each layer's load, their mean CV, the router's mean entropy.
    double entropy = 0, cv = 0;
    for (int l = 0; l < kLayers; ++l) {
        std::vector<double> load(kExperts, 0.0);
        for (int t = 0; t < kTokens; ++t) {
            const double* row = &z[l][t * kExperts];
            const double max = *std::max_element(row, row + kExperts);
            double s = 0;
            for (int e = 0; e < kExperts; ++e) s += std::exp(row[e] - max);
            for (int e = 0; e < kExperts; ++e) entropy -= std::exp(row[e] - max) / s * (row[e] - max - std::log(s));
            for (int e : routes[l * kTokens + t]) load[e] += 1;
        }
        double mean = kTokens * kTopK / static_cast<double>(kExperts), var = 0;
        for (int e = 0; e < kExperts; ++e) {
            EXPECT_EQ(loss.layer_load()[l * kExperts + e], load[e]) << "layer " << l << " expert " << e;
            var += (load[e] - mean) * (load[e] - mean) / kExperts;
        }
        cv += std::sqrt(var) / mean / kLayers;
    }
    EXPECT_NEAR(loss.gate_entropy(), entropy / (kLayers * kTokens), 1e-12);
    EXPECT_NEAR(loss.load_cv(), cv, 1e-12);
    EXPECT_GT(cv, 0.01);
    for (const auto& [aux_coef, z_coef] : {std::pair{1.0, 0.0}, {0.0, 1.0}, {0.01, 0.001}}) {
        for (int l = 0; l < kLayers; ++l) {
            std::vector<float> g(saved[l].logits.size(), 0.0f);
            loss.add_gradient(saved[l], aux_coef, z_coef, g);
            for (int t = first; t < last; ++t)
                for (int e = 0; e < kExperts; ++e) {
                    const double h = 1e-5, keep = z[l][t * kExperts + e];
                    z[l][t * kExperts + e] = keep + h;
                    const double up = reference(z, routes, aux_coef, z_coef);
                    z[l][t * kExperts + e] = keep - h;
                    const double down = reference(z, routes, aux_coef, z_coef);
                    z[l][t * kExperts + e] = keep;
                    const double fd = (up - down) / (2 * h), got = g[(t - first) * kExperts + e];
                    EXPECT_NEAR(got, fd, 1e-6 + 1e-4 * std::abs(fd)) << "layer " << l << " token " << t << " e " << e;
                }
        }
    }
}

}  // namespace
}  // namespace epmoe
