#include "app/dump.hpp"

#include "epmoe/io/safetensors.hpp"

namespace epmoe {

void dump_output(const mpi::Comm& comm, const std::string& path, const ModelShape& shape, std::span<const float> h,
                 const std::vector<Routing>& routing) {
    std::vector<TensorToWrite> tensors;
    std::vector<float> all_h = mpi::gatherv_to_root<float>(comm, h);
    const int64_t total = static_cast<int64_t>(all_h.size()) / shape.d_model;
    if (comm.rank() == 0) tensors.push_back(tensor_from_f32("hidden_states", {total, shape.d_model}, all_h));
    for (int l = 0; l < shape.num_layers; ++l) {
        if (routing[l].top_k == 0) continue;  // a dense layer: no routing
        std::vector<int32_t> ids = mpi::gatherv_to_root<int32_t>(comm, routing[l].expert_ids);
        std::vector<float> weights = mpi::gatherv_to_root<float>(comm, routing[l].weights);
        if (comm.rank() != 0) continue;
        tensors.push_back(tensor_from_i32(cat("topk_ids.", l), {total, shape.top_k}, ids));
        tensors.push_back(tensor_from_f32(cat("topk_weights.", l), {total, shape.top_k}, weights));
    }
    mpi::all_or_none(comm, [&] {
        if (comm.rank() == 0) write_safetensors(path, tensors, {{"producer", "epmoe"}});
    });
}

}  // namespace epmoe
