// The collectives over a ParamRegistry (include/epmoe/train/optim.hpp): the gradient all-reduce of replicated
// tensors, the global gradient norm and its clipping.
#include <algorithm>
#include <cmath>

#include "epmoe/base/error.hpp"
#include "epmoe/train/optim.hpp"

namespace epmoe {
namespace {

// The communicators that sum some tensor's gradient, in the order their first tensor was registered.
std::vector<const mpi::Comm*> reducing_comms(const ParamRegistry& params) {
    std::vector<const mpi::Comm*> comms;
    for (const Param& p : params.params())
        if (p.replicas != nullptr && p.replicas->size() > 1 &&
            std::find(comms.begin(), comms.end(), p.replicas) == comms.end())
            comms.push_back(p.replicas);
    return comms;
}

// Sums the gradients of the tensors whose replicas are `comm`, in registration order: a tensor of at least
// buffer.size() floats in place, buffer.size() floats a call; the smaller ones copied into `buffer` and summed
// one full buffer at a time (a tensor may straddle two buffers).
void allreduce_over(const ParamRegistry& params, const mpi::Comm* comm, std::vector<float>& buffer) {
    struct Piece {
        float* grad;
        size_t count;
    };
    std::vector<Piece> pieces;  // where the buffer's floats came from, in order
    size_t filled = 0;
    auto flush = [&] {
        mpi::allreduce(*comm, std::span<float>(buffer.data(), filled), mpi::Op::kSum);
        const float* from = buffer.data();
        for (const Piece& piece : pieces) {
            std::copy_n(from, piece.count, piece.grad);
            from += piece.count;
        }
        pieces.clear();
        filled = 0;
    };
    for (const Param& p : params.params()) {
        if (p.replicas != comm) continue;
        if (p.grad.size() >= buffer.size()) {
            for (size_t done = 0; done < p.grad.size(); done += buffer.size())
                mpi::allreduce(*comm, p.grad.subspan(done, std::min(buffer.size(), p.grad.size() - done)),
                               mpi::Op::kSum);
            continue;
        }
        for (size_t done = 0; done < p.grad.size();) {
            const size_t count = std::min(p.grad.size() - done, buffer.size() - filled);
            std::copy_n(p.grad.data() + done, count, buffer.data() + filled);
            pieces.push_back({p.grad.data() + done, count});
            filled += count;
            done += count;
            if (filled == buffer.size()) flush();
        }
    }
    if (filled > 0) flush();
}

}  // namespace

void allreduce_gradients(const ParamRegistry& params, size_t max_buffer_floats) {
    EPMOE_ASSERT(max_buffer_floats > 0);
    const std::vector<const mpi::Comm*> comms = reducing_comms(params);
    if (comms.empty()) return;
    size_t largest = 0;  // floats over the tensors of the communicator that has most
    for (const mpi::Comm* comm : comms) {
        size_t n = 0;
        for (const Param& p : params.params())
            if (p.replicas == comm) n += p.grad.size();
        largest = std::max(largest, n);
    }
    std::vector<float> buffer(std::min(largest, max_buffer_floats));
    for (const mpi::Comm* comm : comms) allreduce_over(params, comm, buffer);
}

double global_grad_norm(const ParamRegistry& params, const mpi::Comm& world) {
    return std::sqrt(mpi::allreduce_one(world, grad_sq_share(params), mpi::Op::kSum));
}

double clip_grad_norm(const ParamRegistry& params, const mpi::Comm& world, double max_norm) {
    const double norm = global_grad_norm(params, world);
    clip_gradients(params, norm, max_norm);
    return norm;
}

}  // namespace epmoe
