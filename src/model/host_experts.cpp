#include "epmoe/model/host_experts.hpp"

#include <cstring>
#include <memory>
#include <vector>

#include "epmoe/base/error.hpp"
#include "epmoe/comm/shared_window.hpp"

namespace epmoe {
namespace {

// A segment: int64 [1 + 4 n] (n, then layer, expert and the byte offsets of W1|W3 and W2 for each of the rank's
// n experts), then the arrays, each 64-byte aligned.
struct Entry {
    int64_t layer, expert, w13, w2;
};

// Where this rank's experts go in its segment, and the segment's bytes.
std::vector<Entry> lay_out(const Model& model, size_t& bytes) {
    std::vector<Entry> entries;
    size_t count = 0;
    for (const MoeLayer& layer : model.layers) count += layer.experts.size();
    bytes = mpi::segment_part_bytes(sizeof(int64_t) * (1 + 4 * count));
    for (size_t l = 0; l < model.layers.size(); ++l)
        for (const auto& [e, w] : model.layers[l].experts) {
            const MlpArrays a = model.kernel->arrays(w, model.shape.d_model, model.shape.d_ff);
            Entry entry{static_cast<int64_t>(l), e, static_cast<int64_t>(bytes), 0};
            bytes += mpi::segment_part_bytes(a.w13.size());
            entry.w2 = static_cast<int64_t>(bytes);
            bytes += mpi::segment_part_bytes(a.w2.size());
            entries.push_back(entry);
        }
    return entries;
}

void write_segment(const Model& model, const std::vector<Entry>& entries, char* base) {
    auto* header = reinterpret_cast<int64_t*>(base);
    header[0] = static_cast<int64_t>(entries.size());
    for (size_t i = 0; i < entries.size(); ++i) {
        const Entry& e = entries[i];
        std::memcpy(header + 1 + 4 * i, &e, sizeof(Entry));
        const MlpArrays a = model.kernel->arrays(model.layers[e.layer].experts.at(static_cast<int>(e.expert)),
                                                 model.shape.d_model, model.shape.d_ff);
        std::memcpy(base + e.w13, a.w13.data(), a.w13.size());
        std::memcpy(base + e.w2, a.w2.data(), a.w2.size());
    }
}

}  // namespace

uint64_t host_expert_bytes(const mpi::Comm& comm, const Model& model) {
    size_t bytes = 0;
    lay_out(model, bytes);
    return mpi::allreduce_one<uint64_t>(comm.split_shared(), bytes, mpi::Op::kSum);
}

void share_experts_on_host(const mpi::Comm& comm, Model& model) {
    static_assert(sizeof(Entry) == 4 * sizeof(int64_t));
    auto window = std::make_shared<mpi::SharedWindow>(comm);
    size_t bytes = 0;
    const std::vector<Entry> entries = lay_out(model, bytes);
    window->reserve(bytes, /*spare=*/false);
    write_segment(model, entries, window->segment(window->host_rank()));
    window->sync();  // every rank's experts written
    const int d = model.shape.d_model, f = model.shape.d_ff;
    for (int h = 0; h < window->host_size(); ++h) {
        const char* base = window->segment(h);
        const auto* header = reinterpret_cast<const int64_t*>(base);
        for (int64_t i = 0; i < header[0]; ++i) {
            Entry e;
            std::memcpy(&e, header + 1 + 4 * i, sizeof(Entry));
            MoeLayer& layer = model.layers.at(static_cast<size_t>(e.layer));
            const ExpertWeights view =
                model.kernel->view(reinterpret_cast<const std::byte*>(base + e.w13),
                                   reinterpret_cast<const std::byte*>(base + e.w2), d, f, window);
            const int expert = static_cast<int>(e.expert);
            if (h == window->host_rank()) layer.experts[expert] = view;  // the private copy goes
            layer.host_experts.emplace(expert, view);
        }
    }
}

}  // namespace epmoe
