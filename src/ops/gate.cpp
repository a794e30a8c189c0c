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
// once (rows[i] for i < R, logits[i] their rows of logits): each 8 weights are widened once for the R rows. A
// product of two floats is exact in double, so a fused multiply-add and a multiply then add give the same bits,
// and each logit is the same sum in the same order whatever R and whatever the instruction set: lane j mod 8,
// then a fixed tree, then the tail.
template <int R>
[[gnu::always_inline]] inline void gate_block(const float* const* rows, const float* w_gate, size_t d, int e0,
                                              int count, float* const* logits) {
    const float* w[kGateExperts];
    for (int q = 0; q < kGateExperts; ++q) w[q] = w_gate + (e0 + std::min(q, count - 1)) * d;
    Lanes acc[R][kGateExperts] = {};
    const size_t body = d / kGateLanes * kGateLanes;
    for (size_t j = 0; j < body; j += kGateLanes) {
        Lanes wv[kGateExperts];
        for (int q = 0; q < kGateExperts; ++q) {
            Floats f;
            std::memcpy(&f, w[q] + j, sizeof(Floats));
            wv[q] = __builtin_convertvector(f, Lanes);
        }
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

// Rows t .. t + B - 1's logits (B rows from t).
template <int B>
[[gnu::always_inline]] inline void gate_rows_from(const float* x, size_t t, const float* w_gate, size_t d,
                                                  int num_experts, float* logits) {
    const float* rows[B];
    float* out[B];
    for (int i = 0; i < B; ++i) rows[i] = x + (t + i) * d, out[i] = logits + (t + i) * num_experts;
    for (int e = 0; e < num_experts; e += kGateExperts)
        gate_block<B>(rows, w_gate, d, e, std::min(kGateExperts, num_experts - e), out);
}

// Every row's logits: blocks of R rows, then the rows left one at a time. (No lambdas here: GCC compiles a
// lambda's body without its enclosing function's target attribute.)
template <int R>
[[gnu::always_inline]] inline void gate_rows(const float* x, size_t n, const float* w_gate, size_t d, int num_experts,
                                             float* logits) {
    size_t t = 0;
    for (; t + R <= n; t += R) gate_rows_from<R>(x, t, w_gate, d, num_experts, logits);
    for (; t < n; ++t) gate_rows_from<1>(x, t, w_gate, d, num_experts, logits);
}

// Four rows a block where AVX-512 holds their 16 sums in registers; one row elsewhere.
__attribute__((target("avx512f"))) void gate_rows_avx512(const float* x, size_t n, const float* w, size_t d, int e,
                                                         float* logits) {
    gate_rows<4>(x, n, w, d, e, logits);
}
__attribute__((target("avx2,fma"))) void gate_rows_avx2(const float* x, size_t n, const float* w, size_t d, int e,
                                                        float* logits) {
    gate_rows<1>(x, n, w, d, e, logits);
}
void gate_rows_plain(const float* x, size_t n, const float* w, size_t d, int e, float* logits) {
    gate_rows<1>(x, n, w, d, e, logits);
}

}  // namespace

void gate_logits(std::span<const float> x, std::span<const float> w_gate, int d_model, int num_experts,
                 std::span<float> logits) {
    const size_t d = d_model, n = x.size() / d;
    EPMOE_ASSERT(w_gate.size() == d * num_experts && logits.size() == n * num_experts);
    static const bool avx512 = __builtin_cpu_supports("avx512f"),
                      avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    auto* run = avx512 ? gate_rows_avx512 : avx2 ? gate_rows_avx2 : gate_rows_plain;
    run(x.data(), n, w_gate.data(), d, num_experts, logits.data());
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
