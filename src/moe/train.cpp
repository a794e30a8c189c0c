// Training through the expert-parallel MoE block (train.hpp): the forward that keeps what the backward needs,
// and the backward, which replays the forward's plan with the gradients: output gradients go to the experts
// along the forward's send counts, input gradients come back with send and receive swapped.
#include "epmoe/moe/train.hpp"

#include <algorithm>
#include <cstring>

#include "epmoe/base/error.hpp"
#include "epmoe/ops/gate.hpp"

namespace epmoe {
namespace {

// Row `row` of a slot as DispatchBuffers::slot_row names it: r >= 0 row r of send, r <= -2 row -2 - r of own.
float* slot_row_ptr(DispatchBuffers& buf, int64_t row, int d) {
    return row >= 0 ? &buf.send[row * d] : &buf.own[(-2 - row) * d];
}

// Copies local expert j's rows between recv/own (where the exchange puts them) and rows [n_e, d], the
// order the expert runs them in: source ranks ascending, each source's rows in token order. to_rows: gather
// into rows, else scatter rows back. Returns n_e.
int64_t move_expert_rows(const DispatchPlan& plan, const std::vector<int64_t>& start, int self, int j, int d,
                         DispatchBuffers& buf, std::vector<float>& rows, bool to_rows) {
    const size_t num_local = plan.local.size(), num_ranks = plan.recv_counts.size() / num_local;
    int64_t n_e = 0;
    for (size_t s = 0; s < num_ranks; ++s) n_e += plan.recv_counts[s * num_local + j];
    if (to_rows) rows.resize(static_cast<size_t>(n_e) * d);
    int64_t at = 0;
    for (size_t s = 0; s < num_ranks; ++s) {
        const size_t b = s * num_local + j, count = plan.recv_counts[b];
        float* block = (static_cast<int>(s) == self ? buf.own.data() : buf.recv.data()) + start[b] * d;
        if (count > 0) {
            float* r = rows.data() + at * d;
            std::memcpy(to_rows ? r : block, to_rows ? block : r, sizeof(float) * count * d);
        }
        at += static_cast<int64_t>(count);
    }
    return n_e;
}

// The exchange of the plan's rows in one blocking alltoallv: send -> recv (to the experts), or with send and
// receive swapped (back from them). recv is sized by the plan.
void exchange_rows(const mpi::Comm& comm, const DispatchPlan& plan, int d, DispatchBuffers& buf, bool to_experts) {
    const ChunkRows& rows = plan.rows;
    if (to_experts) {
        resize_discarding(buf.recv, static_cast<size_t>(rows.recv_row[1]) * d);
        mpi::alltoallv_known<float>(comm, {buf.send.data(), buf.send.size()}, rows.send_elems[0],
                                    {buf.recv.data(), buf.recv.size()}, rows.recv_elems[0]);
    } else {
        mpi::alltoallv_known<float>(comm, {buf.recv.data(), buf.recv.size()}, rows.recv_elems[0],
                                    {buf.send.data(), buf.send.size()}, rows.send_elems[0]);
    }
}

// The forward's experts: each local expert runs its rows (in recv and own) with expert_forward_train, keeps its
// input rows and h13 in saved.experts, and leaves its outputs where its inputs were.
void run_experts_train(const ExpertMap& experts, const ModelShape& shape, int self, MoeBlockSaved& saved,
                       DispatchBuffers& buf) {
    const DispatchPlan& plan = saved.plan;
    const int d = shape.d_model;
    const std::vector<int64_t> start = expert_block_starts(plan.recv_counts, plan.local.size(), self);
    saved.experts.resize(plan.local.size());  // each keeps its buffers from the last step: no fresh pages
    std::vector<float> y;                     // [rows of one expert, d_model]
    for (size_t j = 0; j < plan.local.size(); ++j) {
        ExpertSaved& s = saved.experts[j];
        const int64_t n_e = move_expert_rows(plan, start, self, static_cast<int>(j), d, buf, s.x, true);
        if (n_e == 0) continue;
        auto it = experts.find(plan.local[j]);
        EPMOE_ASSERT(it != experts.end());
        y.resize(s.x.size());
        expert_forward_train(it->second, d, shape.d_ff, s.x, y, s.h13, buf.expert.scratch);
        move_expert_rows(plan, start, self, static_cast<int>(j), d, buf, y, false);
    }
}

// The backward's experts: each local expert's output gradients (in recv and own) through expert_backward,
// into dexperts (created zeroed), the input gradients left where the output gradients were.
void run_experts_backward(const ExpertMap& experts, const ModelShape& shape, int self, const MoeBlockSaved& saved,
                          std::map<int, ExpertWeights>& dexperts, DispatchBuffers& buf) {
    const DispatchPlan& plan = saved.plan;
    const int d = shape.d_model;
    const std::vector<int64_t> start = expert_block_starts(plan.recv_counts, plan.local.size(), self);
    std::vector<float> dy, dx;  // [rows of one expert, d_model]
    for (size_t j = 0; j < plan.local.size(); ++j) {
        auto it = experts.find(plan.local[j]);
        EPMOE_ASSERT(it != experts.end());
        ExpertWeights& grad = dexperts[plan.local[j]];
        if (grad.w13.empty()) {
            grad.w13.assign(it->second.w13.size(), 0.0f);
            grad.w2.assign(it->second.w2.size(), 0.0f);
        }
        const int64_t n_e = move_expert_rows(plan, start, self, static_cast<int>(j), d, buf, dy, true);
        if (n_e == 0) continue;
        const ExpertSaved& s = saved.experts[j];
        dx.assign(dy.size(), 0.0f);
        expert_backward(it->second, d, shape.d_ff, s.x, s.h13, dy, dx, grad, buf.expert.scratch);
        move_expert_rows(plan, start, self, static_cast<int>(j), d, buf, dx, false);
    }
}

// Each kept slot's expert output, [num_tokens * top_k, d_model], 0 for dropped slots.
void keep_slot_outputs(DispatchBuffers& buf, int d, MoeBlockSaved& saved) {
    const size_t slots = buf.slot_row.size();
    saved.slot_out.assign(slots * d, 0.0f);
    for (size_t a = 0; a < slots; ++a)
        if (buf.slot_row[a] != -1)
            std::memcpy(&saved.slot_out[a * d], slot_row_ptr(buf, buf.slot_row[a], d), sizeof(float) * d);
}

}  // namespace

void moe_block_forward_train(const mpi::Comm& comm, const ExpertMap& experts, const ModelShape& shape,
                             const Placement& placement, std::span<const float> gate, std::span<const float> x_norm,
                             std::span<const float> bias, int64_t first_token, int64_t step_tokens,
                             const DispatchOptions& options, std::span<float> out, MoeBlockSaved& saved,
                             LayerTimes& times, DispatchBuffers& buf) {
    const int d = shape.d_model, num_experts = shape.num_experts, k = shape.top_k;
    const size_t n = x_norm.size() / d;
    EPMOE_ASSERT(x_norm.size() == n * d && out.size() == x_norm.size() && !sim::simulated());
    const double t0 = mpi::wtime();
    saved.logits.resize(n * num_experts);
    gate_logits(x_norm, gate, d, num_experts, saved.logits);  // [num_tokens, num_experts]
    saved.routing = route(saved.logits, num_experts, k, bias, shape.gate, shape.norm_topk_prob);
    const double t1 = mpi::wtime();
    DispatchOptions one_chunk = options;
    one_chunk.overlap_chunks = 1;
    saved.plan =
        plan_dispatch(comm, placement, saved.routing, num_experts, d, first_token, step_tokens, one_chunk, buf);
    const double p0 = mpi::wtime();
    for (size_t a = 0; a < buf.slot_row.size(); ++a)  // every kept slot's input row, in send or own
        if (buf.slot_row[a] != -1)
            std::memcpy(slot_row_ptr(buf, buf.slot_row[a], d), &x_norm[a / k * d], sizeof(float) * d);
    const double p1 = mpi::wtime();
    exchange_rows(comm, saved.plan, d, buf, true);
    const double t2 = mpi::wtime();
    run_experts_train(experts, shape, comm.rank(), saved, buf);
    const double t3 = mpi::wtime();
    exchange_rows(comm, saved.plan, d, buf, false);
    LayerResult result;
    result.expert_load.assign(num_experts, 0);
    combine_tokens(saved.routing, buf.send, buf.own, buf.slot_row, d, out, result);
    keep_slot_outputs(buf, d, saved);
    saved.kept = std::move(saved.plan.kept);
    saved.expert_load = std::move(result.expert_load);
    saved.dropped = result.dropped;
    const double t4 = mpi::wtime();
    times.gate += t1 - t0;
    times.layout += saved.plan.layout_s + p1 - p0;
    times.dispatch += t2 - t1;
    times.expert += t3 - t2;
    times.combine += t4 - t3;
}

void moe_block_backward(const mpi::Comm& comm, const ExpertMap& experts, const ModelShape& shape,
                        const Placement& placement, std::span<const float> x_norm, const MoeBlockSaved& saved,
                        std::span<const float> dout, int64_t first_token, int64_t /*step_tokens*/,
                        const DispatchOptions& /*options*/, std::span<float> dx_norm,
                        std::map<int, ExpertWeights>& dexperts, std::span<float> dlogits, LayerTimes& times,
                        DispatchBuffers& buf) {
    const int d = shape.d_model, num_experts = shape.num_experts, k = shape.top_k;
    const Routing& routing = saved.routing;
    const size_t n = static_cast<size_t>(routing.num_tokens()), slots = n * k;
    EPMOE_ASSERT(x_norm.size() == n * d && dout.size() == n * d && dx_norm.size() == n * d &&
                 dlogits.size() == n * num_experts && saved.slot_out.size() == slots * d);
    const double t0 = mpi::wtime();
    // The forward's row layout again (buf has run other layers since); the counts must be the plan's.
    const std::vector<int> counts = assign_rows(placement, routing, saved.kept, d, first_token, buf, 1, comm.rank());
    EPMOE_ASSERT(counts == saved.plan.send_counts);
    // The combine's backward: dweights[t, i] = dout[t] · slot output; the slot's output gradient weight * dout[t].
    std::vector<float> dweights(slots, 0.0f);  // [num_tokens, top_k]
    for (size_t a = 0; a < slots; ++a) {
        if (buf.slot_row[a] == -1) continue;  // dropped: no gradient
        const float* g = &dout[a / k * d];
        const float* y = &saved.slot_out[a * d];
        float* dy = slot_row_ptr(buf, buf.slot_row[a], d);
        double dot = 0;
        for (int j = 0; j < d; ++j) {
            dot += static_cast<double>(g[j]) * y[j];
            dy[j] = routing.weights[a] * g[j];
        }
        dweights[a] = static_cast<float>(dot);
    }
    exchange_rows(comm, saved.plan, d, buf, true);
    const double t1 = mpi::wtime();
    run_experts_backward(experts, shape, comm.rank(), saved, dexperts, buf);
    const double t2 = mpi::wtime();
    exchange_rows(comm, saved.plan, d, buf, false);
    for (size_t a = 0; a < slots; ++a) {  // each token's slots in order: the same sum whatever the rank count
        if (buf.slot_row[a] == -1) continue;
        const float* dx = slot_row_ptr(buf, buf.slot_row[a], d);
        float* acc = &dx_norm[a / k * d];
        for (int j = 0; j < d; ++j) acc[j] += dx[j];
    }
    const double t3 = mpi::wtime();
    std::fill(dlogits.begin(), dlogits.end(), 0.0f);
    route_weights_backward(saved.logits, num_experts, routing.expert_ids, k, shape.gate, shape.norm_topk_prob, dweights,
                           dlogits);
    const double t4 = mpi::wtime();
    times.dispatch += t1 - t0;
    times.expert += t2 - t1;
    times.combine += t3 - t2;
    times.gate += t4 - t3;
}

}  // namespace epmoe
