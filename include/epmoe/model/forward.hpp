// One step of the MoE stack on this rank's tokens: h <- h + MoE_l(RMSNorm_l(h)) for every layer.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "epmoe/comm/mpi.hpp"
#include "epmoe/model/model.hpp"
#include "epmoe/moe/dispatch.hpp"
#include "epmoe/moe/fidelity.hpp"
#include "epmoe/moe/placement.hpp"
#include "epmoe/moe/router.hpp"
#include "epmoe/moe/router_correction.hpp"

namespace epmoe {

struct StepResult {
    LayerTimes times;                 // summed over layers
    std::vector<LayerResult> layers;  // [num_layers]
    std::vector<Routing> routing;     // [num_layers], the routing each layer used
    double expert_flops = 0;          // FLOPs this rank ran in its experts
    double gate_flops = 0;            // FLOPs of the gate GEMMs
    double bytes_moved = 0;           // alltoallv traffic and expert weights read, bytes
    FidelityCounts fidelity;          // biased vs unbiased routing; its seconds are not in `times`
};

class Forward {
public:
    // The model must hold the experts that placement gives this rank. capacity_factor 0 = dropless.
    Forward(const Model& model, const Placement& placement, double capacity_factor);

    // h: [num_tokens, d_model], updated in place. first_token: global index of row 0; step_tokens: tokens
    // of the step over all ranks; biases: [num_layers, num_experts] selection biases (empty = none).
    // Collective over comm.
    StepResult step(const mpi::Comm& comm, std::span<float> h, int64_t first_token, int64_t step_tokens,
                    std::span<const float> biases);
    // One layer's MoE block, h <- h + MoE(RMSNorm(h)) (or its dense MLP), appending to result: what step()
    // runs for each layer, for callers that run attention between the blocks. bias: [num_experts] or empty.
    // Collective over comm.
    void layer(const mpi::Comm& comm, int l, std::span<float> h, int64_t first_token, int64_t step_tokens,
               std::span<const float> bias, StepResult& result);
    // output_rel_l2 sample: global tokens t with t % every == 0 (0 = changed counts only). Default 16.
    void set_fidelity_sample(int every) { fidelity_.set_sample_every(every); }
    // compute.overlap_chunks (DispatchOptions); 1 = no overlap.
    void set_overlap_chunks(int chunks) { options_.overlap_chunks = chunks; }
    // Threads the experts run on as tasks (DispatchOptions::expert_threads); 1 = in turn.
    void set_expert_threads(int threads) { options_.expert_threads = threads; }
    // resources.exchange resolved: true = the shared-memory exchange (DispatchOptions::shared_exchange).
    void set_shared_exchange(bool shared) { options_.shared_exchange = shared; }
    // resources.work_sharing = host (DispatchOptions::share_work): the model's layers hold host_experts
    // (share_experts_on_host).
    void set_work_sharing(bool share) { options_.share_work = share; }
    // resources.inter_host = two_level (DispatchOptions::two_level).
    void set_two_level(bool two_level) { options_.two_level = two_level; }
    // --policy ttt: every MoE layer routes with its corrected logits and keeps the rows the update learns from
    // (null = the checkpoint's router). The adaptation must outlive the Forward.
    void set_adaptation(RouterAdaptation* adapt) { adapt_ = adapt; }

private:
    const Model& model_;
    const Placement& placement_;
    DispatchOptions options_;
    std::vector<float> norm_, logits_, moe_out_;  // [num_tokens, d_model], [num_tokens, E], [num_tokens, d_model]
    std::vector<float> adapted_;                  // [num_tokens, E] the corrected logits (--policy ttt)
    RouterAdaptation* adapt_ = nullptr;
    DispatchBuffers buffers_;
    Fidelity fidelity_{16};
};

}  // namespace epmoe
