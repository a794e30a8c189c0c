// The gate projection (gate.hpp) forward and backward, and the backward of the router's weights.
#include "epmoe/ops/gate.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <vector>

#include "epmoe/base/error.hpp"
#include "sgemm.hpp"

namespace epmoe {

namespace {

constexpr int kGateLanes = 8;    // partial sums a logit: element j goes to lane j mod 8
constexpr int kGateExperts = 4;  // experts sharing each load of a row

// Eight doubles (eight floats): GCC's vector types keep the partial sums in registers.
typedef double Lanes __attribute__((vector_size(8 * sizeof(double))));
typedef float Floats __attribute__((vector_size(8 * sizeof(float))));

// logits of experts e0 .. e0 + count (count <= kGateExperts; spare sums repeat the last expert) for R rows at
// once (rows[i] for i < R, logits[i] their rows of logits), the weights already in double (wd [E, d]). A product
// of two floats is exact in double, so a fused multiply-add and a multiply then add give the same bits, and each
// logit is the same sum in the same order whatever R and whatever the instruction set: lane j mod 8, then a
// fixed tree, then the tail.
template <int R>
[[gnu::always_inline]] inline void gate_block(const float* const* rows, const double* wd, size_t d, int e0, int count,
                                              float* const* logits) {
    const double* w[kGateExperts];
    for (int q = 0; q < kGateExperts; ++q) w[q] = wd + (e0 + std::min(q, count - 1)) * d;
    Lanes acc[R][kGateExperts] = {};
    const size_t body = d / kGateLanes * kGateLanes;
    for (size_t j = 0; j < body; j += kGateLanes) {
        Lanes wv[kGateExperts];
        for (int q = 0; q < kGateExperts; ++q) std::memcpy(&wv[q], w[q] + j, sizeof(Lanes));
        for (int i = 0; i < R; ++i) {
            Floats f;
            std::memcpy(&f, rows[i] + j, sizeof(Floats));
            const Lanes x = __builtin_convertvector(f, Lanes);
            for (int q = 0; q < kGateExperts; ++q) acc[i][q] += x * wv[q];
        }
    }
    for (int i = 0; i < R; ++i)
        for (int q = 0; q < count; ++q) {
            const Lanes& a = acc[i][q];
            double sum = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
            for (size_t j = body; j < d; ++j) sum += static_cast<double>(rows[i][j]) * w[q][j];
            logits[i][e0 + q] = static_cast<float>(sum);
        }
}

// Four rows a block where AVX-512 holds their 16 sums in registers; one row elsewhere.
constexpr int kAvx512Rows = 4;
__attribute__((target("avx512f"))) void gate_block_avx512(const float* const* rows, const double* wd, size_t d, int e0,
                                                          int count, float* const* logits) {
    gate_block<kAvx512Rows>(rows, wd, d, e0, count, logits);
}
__attribute__((target("avx2,fma"))) void gate_block_avx2(const float* const* rows, const double* wd, size_t d, int e0,
                                                         int count, float* const* logits) {
    gate_block<1>(rows, wd, d, e0, count, logits);
}
void gate_block_plain(const float* const* rows, const double* wd, size_t d, int e0, int count, float* const* logits) {
    gate_block<1>(rows, wd, d, e0, count, logits);
}

}  // namespace

void gate_logits(std::span<const float> x, std::span<const float> w_gate, int d_model, int num_experts,
                 std::span<float> logits) {
    const size_t d = d_model, n = x.size() / d;
    EPMOE_ASSERT(w_gate.size() == d * num_experts && logits.size() == n * num_experts);
    thread_local std::vector<double> wd;  // the weights widened once a call (256 KiB at 32 x 1024)
    wd.assign(w_gate.begin(), w_gate.end());
    static const bool avx512 = __builtin_cpu_supports("avx512f"),
                      avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const int block = avx512 ? kAvx512Rows : 1;
    auto* run = avx512 ? gate_block_avx512 : avx2 ? gate_block_avx2 : gate_block_plain;
    thread_local std::vector<float> spare;  // where a short last block's spare rows write
    spare.resize(static_cast<size_t>(kAvx512Rows) * num_experts);
    for (size_t t = 0; t < n; t += block) {
        const float* rows[kAvx512Rows];
        float* out[kAvx512Rows];
        for (int i = 0; i < block; ++i) {
            const bool real = t + i < n;
            rows[i] = &x[std::min(t + i, n - 1) * d];  // spare rows repeat the last one
            out[i] = real ? &logits[(t + i) * num_experts] : &spare[i * num_experts];
        }
        for (int e = 0; e < num_experts; e += kGateExperts)
            run(rows, wd.data(), d, e, std::min(kGateExperts, num_experts - e), out);
    }
}

void gate_logits_backward(std::span<const float> x, std::span<const float> w_gate, int d_model, int num_experts,
                          std::span<const float> dlogits, std::span<float> dx, std::span<float> dw_gate) {
    const size_t d = static_cast<size_t>(d_model), n = x.size() / d, e = static_cast<size_t>(num_experts);
    EPMOE_ASSERT(d_model > 0 && num_experts > 0 && x.size() == n * d && n <= INT_MAX && w_gate.size() == e * d &&
                 dlogits.size() == n * e && (dx.empty() || dx.size() == x.size()) &&
                 (dw_gate.empty() || dw_gate.size() == w_gate.size()));
    if (n == 0) return;
    const int rows = static_cast<int>(n);
    if (!dx.empty())  // dx [n, d] += dlogits [n, E] w_gate [E, d]
        sgemm(false, false, rows, d_model, num_experts, 1.0f, dlogits.data(), num_experts, w_gate.data(), d_model, 1.0f,
              dx.data(), d_model);
    if (!dw_gate.empty())  // dw_gate [E, d] += dlogits^T [E, n] x [n, d]
        sgemm(true, false, num_experts, d_model, rows, 1.0f, dlogits.data(), num_experts, x.data(), d_model, 1.0f,
              dw_gate.data(), d_model);
}

void route_weights_backward(std::span<const float> logits, int num_experts, std::span<const int32_t> expert_ids,
                            int top_k, GateKind gate, bool norm_topk, std::span<const float> dweights,
                            std::span<float> dlogits) {
    const size_t e_count = static_cast<size_t>(num_experts), k = static_cast<size_t>(top_k);
    EPMOE_ASSERT(top_k >= 1 && top_k <= num_experts && logits.size() % e_count == 0);
    const size_t n = logits.size() / e_count;
    EPMOE_ASSERT(expert_ids.size() == n * k && dweights.size() == n * k && dlogits.size() == logits.size());
    std::vector<double> score(e_count), dscore(e_count);  // [num_experts]: a row's scores and their gradient
    for (size_t t = 0; t < n; ++t) {
        const float* z = &logits[t * e_count];
        const int32_t* ids = &expert_ids[t * k];
        const float* dw = &dweights[t * k];
        if (gate == GateKind::kSoftmax) {
            const double max = *std::max_element(z, z + e_count);
            double sum = 0;
            for (size_t e = 0; e < e_count; ++e) sum += score[e] = std::exp(static_cast<double>(z[e]) - max);
            for (size_t e = 0; e < e_count; ++e) score[e] /= sum;
        } else {
            for (size_t e = 0; e < e_count; ++e) score[e] = 1.0 / (1.0 + std::exp(-static_cast<double>(z[e])));
        }
        // weights w_i = s_i / S (S = the selected scores' sum) or s_i: ds_i = (dw_i - sum_j dw_j w_j) / S, or dw_i.
        double sum = 0, dot = 0;
        for (size_t i = 0; i < k; ++i) sum += score[static_cast<size_t>(ids[i])];
        const bool renorm = norm_topk && sum > 0;
        for (size_t i = 0; i < k; ++i) dot += dw[i] * (renorm ? score[static_cast<size_t>(ids[i])] / sum : 0.0);
        std::fill(dscore.begin(), dscore.end(), 0.0);
        for (size_t i = 0; i < k; ++i) {
            EPMOE_ASSERT(ids[i] >= 0 && ids[i] < num_experts);
            dscore[static_cast<size_t>(ids[i])] += renorm ? (dw[i] - dot) / sum : dw[i];
        }
        // softmax: dz_e = s_e (ds_e - sum_f ds_f s_f); sigmoid: dz_e = ds_e s_e (1 - s_e).
        double mean = 0;
        if (gate == GateKind::kSoftmax)
            for (size_t e = 0; e < e_count; ++e) mean += dscore[e] * score[e];
        for (size_t e = 0; e < e_count; ++e) {
            const double dz =
                gate == GateKind::kSoftmax ? score[e] * (dscore[e] - mean) : dscore[e] * score[e] * (1.0 - score[e]);
            dlogits[t * e_count + e] += static_cast<float>(dz);
        }
    }
}

}  // namespace epmoe
