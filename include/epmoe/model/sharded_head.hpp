// The LM head split over the ranks by vocabulary, for generate at several ranks: a decode step wants the logits
// of a few rows, so the head is bound by reading its weights (vocab x d_model floats a step, on every rank when
// each runs the whole head on its own rows). Split, each rank holds and reads the columns of its share of the
// vocabulary (split_over_ranks) for every rank's rows, and sends each rank its rows' columns back: 1/P of the
// weights read a rank, two small exchanges (the rows, d_model floats each, and the logits, vocab floats each).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "epmoe/comm/mpi.hpp"
#include "epmoe/ops/packed_linear.hpp"

namespace epmoe {

class ShardedHead {
public:
    // This rank's rows of w [vocab, d] (PyTorch's [out, in]), packed as PackedLinear packs (a view of w where it
    // does not pack: w must then outlive this). vocab >= comm.size().
    ShardedHead(const mpi::Comm& comm, std::span<const float> w, int vocab, int d);

    // logits [m, vocab] = x [m, d] W^T for this rank's m rows, each rank's rows' columns computed where they are
    // held. Collective over the comm given at construction (every rank calls it, m may be 0).
    void run(const mpi::Comm& comm, std::span<const float> x, int64_t m, std::span<float> logits);

    size_t packed_bytes() const { return part_.packed_bytes(); }

private:
    PackedLinear part_;  // [columns of this rank, d]
    int vocab_ = 0, d_ = 0;
    std::vector<int64_t> first_;            // [size + 1]: rank r holds columns first_[r] .. first_[r + 1]
    std::vector<float> rows_, out_, back_;  // scratch: every rank's rows, their logits here, this rank's back
};

}  // namespace epmoe
