#include "epmoe/moe/fidelity.hpp"

#include <algorithm>

namespace epmoe {

void count_changed(const Routing& biased, const Routing& unbiased, std::span<const uint8_t> kept,
                   FidelityCounts& counts) {
    const int k = biased.top_k;
    const int64_t n = biased.num_tokens();
    EPMOE_ASSERT(unbiased.top_k == k && unbiased.num_tokens() == n);
    EPMOE_ASSERT(kept.empty() || kept.size() == static_cast<size_t>(n) * k);
    for (int64_t t = 0; t < n; ++t) {
        const int32_t* ref = &unbiased.expert_ids[t * k];
        int changed = 0;
        for (int i = 0; i < k; ++i)
            changed +=
                (!kept.empty() && !kept[t * k + i]) || std::find(ref, ref + k, biased.expert_ids[t * k + i]) == ref + k;
        counts.changed_slots += changed;
        counts.changed_tokens += changed > 0;
    }
    counts.slots += static_cast<double>(n) * k;
    counts.tokens += static_cast<double>(n);
}

void Fidelity::measure(const mpi::Comm& comm, const ExpertMap& experts, const MlpKernel& kernel,
                       const ModelShape& shape, const Placement& placement, std::span<const float> x_norm,
                       std::span<const float> logits, std::span<const float> bias, bool adapted, bool capacity,
                       const Routing& biased, std::span<const uint8_t> kept, std::span<const float> biased_out,
                       int64_t first_token, FidelityCounts& counts) {
    const bool biased_at_all = adapted || std::any_of(bias.begin(), bias.end(), [](float b) { return b != 0.0f; });
    if (!biased_at_all && !capacity) {  // the routing is the unbiased dropless one: nothing changed
        counts.slots += static_cast<double>(biased.num_tokens()) * biased.top_k;
        counts.tokens += static_cast<double>(biased.num_tokens());
        return;
    }
    const double t0 = mpi::wtime();
    const int d = shape.d_model, k = shape.top_k;
    Routing unbiased =
        biased_at_all ? route(logits, shape.num_experts, k, {}, shape.gate, shape.norm_topk_prob) : biased;
    count_changed(biased, unbiased, kept, counts);
    if (sample_every_ > 0) {
        Routing sample;  // the unbiased routing of the sampled tokens
        sample.top_k = k;
        std::vector<int64_t> rows;
        for (int64_t t = 0; t < biased.num_tokens(); ++t)
            if ((first_token + t) % sample_every_ == 0) rows.push_back(t);
        x_.resize(rows.size() * d);
        out_.resize(rows.size() * d);
        for (size_t j = 0; j < rows.size(); ++j) {
            std::copy_n(&x_norm[rows[j] * d], d, &x_[j * d]);
            sample.expert_ids.insert(sample.expert_ids.end(), &unbiased.expert_ids[rows[j] * k],
                                     &unbiased.expert_ids[rows[j] * k] + k);
            sample.weights.insert(sample.weights.end(), &unbiased.weights[rows[j] * k],
                                  &unbiased.weights[rows[j] * k] + k);
        }
        LayerTimes ignored;  // fidelity time is reported apart, never in the phase breakdown
        moe_layer_forward(comm, experts, kernel, shape, placement, x_, sample, first_token, 0, DispatchOptions{}, out_,
                          ignored, buf_);
        for (size_t j = 0; j < rows.size(); ++j)
            for (int i = 0; i < d; ++i) {
                const double y = biased_out[rows[j] * d + i], ref = out_[j * d + i];
                counts.diff_sq += (y - ref) * (y - ref);
                counts.ref_sq += ref * ref;
            }
    }
    counts.seconds += mpi::wtime() - t0;
}

}  // namespace epmoe
