#include "epmoe/dispatch.hpp"

#include <climits>
#include <cmath>
#include <cstring>

#include "epmoe/expert.hpp"

namespace epmoe {
namespace {

// Per-rank element counts from row counts laid out in per-rank blocks: rank r's rows are
// rows[first[r] .. first[r + 1]). first: [num_ranks + 1].
std::vector<int> rank_elems(const std::vector<int>& rows, const std::vector<int>& first, int d_model) {
    std::vector<int> out(first.size() - 1, 0);
    for (size_t r = 0; r < out.size(); ++r) {
        int64_t sum = 0;
        for (int b = first[r]; b < first[r + 1]; ++b) sum += rows[b];
        out[r] = mpi::to_int_count(static_cast<size_t>(sum) * d_model, "alltoallv");
    }
    return out;
}

// Sizes a token buffer whose old contents are not needed: a buffer that must grow is freed first, then
// allocated at exactly n, so a step never holds the old and the new buffer at once, copies nothing, and
// keeps no doubling slack (in the SMPI build every simulated rank's buffers count).
void resize_discarding(sim::TokenBuffer& b, size_t n) {
    if (n > b.capacity()) {
        sim::TokenBuffer().swap(b);
        b.reserve(n);
    }
    b.resize(n);
}

}  // namespace

std::vector<int> pack_tokens(const Placement& placement, const Routing& routing, std::span<const uint8_t> kept,
                             std::span<const float> x, int d, int64_t first_token, DispatchBuffers& buf) {
    const int k = routing.top_k;
    const int64_t n = routing.num_tokens();
    std::vector<int> counts(placement.num_slots(), 0);
    std::vector<int> dest(n * k, -1);  // slot of each kept assignment
    for (int64_t t = 0; t < n; ++t)
        for (int i = 0; i < k; ++i) {
            if (!kept[t * k + i]) continue;
            int e = routing.expert_ids[t * k + i];
            dest[t * k + i] = placement.slot(placement.rank_for(e, first_token + t), e);
            ++counts[dest[t * k + i]];
        }
    std::vector<int64_t> next(counts.size());  // running row index per slot block
    int64_t rows = 0;
    for (size_t b = 0; b < counts.size(); ++b) {
        next[b] = rows;
        rows += counts[b];
    }
    resize_discarding(buf.send, static_cast<size_t>(rows) * d);
    buf.slot_row.assign(n * k, -1);
    for (int64_t t = 0; t < n; ++t)
        for (int i = 0; i < k; ++i) {
            if (dest[t * k + i] < 0) continue;
            int64_t row = next[dest[t * k + i]]++;
            buf.slot_row[t * k + i] = row;
            std::memcpy(&buf.send[row * d], &x[t * d], sizeof(float) * d);
        }
    return counts;
}

namespace {

// Runs every local expert over the rows it received from all ranks; each result overwrites its input row
// in buf.recv (an expert's rows are gathered before its results are scattered back). local: this rank's experts, ascending; recv_counts: [P, local] rows from each
// source rank, by expert.
int64_t run_experts(const MoeLayer& layer, const MlpKernel& kernel, const ModelShape& shape, const std::vector<int>& local,
                    const std::vector<int>& recv_counts, DispatchBuffers& buf) {
    const int num_local = static_cast<int>(local.size()), d = shape.d_model;
    const size_t num_ranks = num_local > 0 ? recv_counts.size() / num_local : 0;
    // Row offset of the (source, expert) block inside recv.
    std::vector<int64_t> start(recv_counts.size());
    int64_t rows = 0;
    for (size_t b = 0; b < recv_counts.size(); ++b) {
        start[b] = rows;
        rows += recv_counts[b];
    }
    for (int j = 0; j < num_local; ++j) {
        int64_t n_e = 0;
        for (size_t s = 0; s < num_ranks; ++s) n_e += recv_counts[s * num_local + j];
        if (n_e == 0) continue;
        if (sim::simulated()) {  // modelled compute; gathering and scattering shared rows would only map pages
            sim::execute_mlp(d, shape.d_ff, n_e);
            continue;
        }
        auto it = layer.experts.find(local[j]);
        EPMOE_ASSERT(it != layer.experts.end());
        resize_discarding(buf.expert_in, n_e * d);
        resize_discarding(buf.expert_out, n_e * d);
        int64_t row = 0;
        for (size_t s = 0; s < num_ranks; ++s) {
            size_t b = s * num_local + j, bytes = sizeof(float) * recv_counts[b] * d;
            std::memcpy(&buf.expert_in[row * d], &buf.recv[start[b] * d], bytes);
            row += recv_counts[b];
        }
        expert_forward(kernel, it->second, d, shape.d_ff, buf.expert_in, buf.expert_out, buf.scratch);
        row = 0;
        for (size_t s = 0; s < num_ranks; ++s) {
            size_t b = s * num_local + j, bytes = sizeof(float) * recv_counts[b] * d;
            std::memcpy(&buf.recv[start[b] * d], &buf.expert_out[row * d], bytes);
            row += recv_counts[b];
        }
    }
    return rows;
}

}  // namespace

int64_t expert_capacity(double capacity_factor, int64_t step_tokens, int top_k, int num_experts) {
    if (capacity_factor <= 0) return INT64_MAX;
    return static_cast<int64_t>(
        std::ceil(capacity_factor * static_cast<double>(step_tokens) * top_k / static_cast<double>(num_experts)));
}

void apply_capacity(std::span<const int32_t> expert_ids, int num_experts, std::span<const int64_t> counts_before,
                    int64_t capacity, std::span<uint8_t> kept) {
    std::vector<int64_t> position(counts_before.begin(), counts_before.end());
    EPMOE_ASSERT(static_cast<int>(position.size()) == num_experts && kept.size() == expert_ids.size());
    for (size_t a = 0; a < expert_ids.size(); ++a) kept[a] = position[expert_ids[a]]++ < capacity ? 1 : 0;
}

void combine_tokens(const Routing& routing, std::span<const float> back, std::span<const int64_t> slot_row, int d,
                    std::span<float> out, LayerResult& result) {
    const int k = routing.top_k;
    const int64_t n = routing.num_tokens();
    std::fill(result.expert_load.begin(), result.expert_load.end(), 0);
    for (int64_t t = 0; t < n; ++t) {
        float* __restrict y = &out[t * d];
        bool written = false;  // the first kept slot stores, the others add: one pass over out, no zero fill
        for (int i = 0; i < k; ++i) {
            int64_t row = slot_row[t * k + i];
            if (row < 0) {
                ++result.dropped;
                continue;
            }
            ++result.expert_load[routing.expert_ids[t * k + i]];
            const float w = routing.weights[t * k + i];
            const float* __restrict src = &back[row * d];
            if (written) {
                for (int j = 0; j < d; ++j) y[j] += w * src[j];
            } else {
                for (int j = 0; j < d; ++j) y[j] = w * src[j];
            }
            written = true;
        }
        if (!written) std::fill(y, y + d, 0.0f);  // every slot dropped
    }
}

LayerResult moe_layer_forward(const mpi::Comm& comm, const MoeLayer& layer, const MlpKernel& kernel, const ModelShape& shape,
                              const Placement& placement, std::span<const float> x_norm, const Routing& routing,
                              int64_t first_token, int64_t step_tokens, double capacity_factor, std::span<float> out,
                              LayerTimes& times, DispatchBuffers& buf) {
    const int num_experts = shape.num_experts, d = shape.d_model, k = routing.top_k;
    const int64_t n = routing.num_tokens();
    EPMOE_ASSERT(x_norm.size() == static_cast<size_t>(n) * d && out.size() == x_norm.size());
    double t0 = mpi::wtime();

    LayerResult result;
    result.expert_load.assign(num_experts, 0);
    result.assigned = n * k;
    result.kept.assign(n * k, 1);
    if (capacity_factor > 0) {
        std::vector<int64_t> assigned(num_experts, 0);  // [E] assignments of this rank's tokens
        for (int32_t e : routing.expert_ids) ++assigned[e];
        std::vector<int64_t> before = mpi::exscan_sum<int64_t>(comm, assigned);
        apply_capacity(routing.expert_ids, num_experts, before,
                       expert_capacity(capacity_factor, step_tokens, k, num_experts), result.kept);
    }
    std::vector<int> send_counts = pack_tokens(placement, routing, result.kept, x_norm, d, first_token, buf);
    // Count exchange: each peer gets the row counts of the experts it holds; this rank receives
    // [P, local] counts, where local are its own experts.
    const int num_ranks = comm.size();
    const std::vector<int> local = placement.experts_of(comm.rank());
    const int num_local = static_cast<int>(local.size());
    std::vector<int> held(num_ranks), recv_first(num_ranks + 1);
    std::vector<int> send_first(num_ranks + 1);
    for (int r = 0; r <= num_ranks; ++r) {
        send_first[r] = placement.first_slot(r);
        recv_first[r] = r * num_local;
        if (r < num_ranks) held[r] = placement.first_slot(r + 1) - placement.first_slot(r);
    }
    std::vector<int> recv_counts(static_cast<size_t>(num_ranks) * num_local);
    mpi::alltoallv_known<int>(comm, send_counts, held, recv_counts, std::vector<int>(num_ranks, num_local));
    std::vector<int> send_elems = rank_elems(send_counts, send_first, d);
    std::vector<int> recv_elems = rank_elems(recv_counts, recv_first, d);
    size_t recv_total = 0;
    for (int c : recv_elems) recv_total += static_cast<size_t>(c);
    resize_discarding(buf.recv, recv_total);
    mpi::alltoallv_known<float>(comm, buf.send, send_elems, buf.recv, recv_elems);
    double t1 = mpi::wtime();

    result.rows_processed = run_experts(layer, kernel, shape, local, recv_counts, buf);
    const double weight_bytes = 3.0 * d * shape.d_ff * sizeof(float);
    for (int j = 0; j < num_local; ++j) {
        bool ran = false;
        for (int s = 0; s < num_ranks; ++s) ran |= recv_counts[static_cast<size_t>(s) * num_local + j] > 0;
        if (ran) result.bytes_moved += weight_bytes;
    }
    result.bytes_moved += 2.0 * sizeof(float) * static_cast<double>(buf.send.size() + buf.recv.size());
    double t2 = mpi::wtime();

    // The results come back into send, in the layout they left in: send's rows are no longer needed.
    mpi::alltoallv_known<float>(comm, buf.recv, recv_elems, buf.send, send_elems);
    combine_tokens(routing, buf.send, buf.slot_row, d, out, result);
    double t3 = mpi::wtime();
    times.dispatch += t1 - t0;
    times.expert += t2 - t1;
    times.combine += t3 - t2;
    return result;
}

}  // namespace epmoe
