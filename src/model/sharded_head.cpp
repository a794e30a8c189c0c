// ShardedHead (sharded_head.hpp).
#include "epmoe/model/sharded_head.hpp"

#include <algorithm>

#include "epmoe/base/error.hpp"
#include "epmoe/io/tokens.hpp"

namespace epmoe {
namespace {

std::span<const float> rows_of(std::span<const float> w, int64_t first, int64_t last, int d) {
    return w.subspan(static_cast<size_t>(first) * d, static_cast<size_t>(last - first) * d);
}

}  // namespace

ShardedHead::ShardedHead(const mpi::Comm& comm, std::span<const float> w, int vocab, int d) : vocab_(vocab), d_(d) {
    EPMOE_ASSERT(vocab >= comm.size() && w.size() == static_cast<size_t>(vocab) * static_cast<size_t>(d));
    for (int r = 0; r < comm.size(); ++r) first_.push_back(split_over_ranks(vocab, r, comm.size()).begin);
    first_.push_back(vocab);
    const int64_t begin = first_[comm.rank()], end = first_[comm.rank() + 1];
    part_ = PackedLinear(rows_of(w, begin, end, d), static_cast<int>(end - begin), d);
}

void ShardedHead::run(const mpi::Comm& comm, std::span<const float> x, int64_t m, std::span<float> logits) {
    const int size = comm.size();
    EPMOE_ASSERT(x.size() == static_cast<size_t>(m) * d_ && logits.size() == static_cast<size_t>(m) * vocab_);
    const std::vector<int> counts = mpi::allgatherv<float>(comm, x, rows_);  // every rank's rows, in rank order
    const int64_t total = static_cast<int64_t>(rows_.size()) / d_;
    std::vector<int> send_counts(static_cast<size_t>(size)), recv_counts(static_cast<size_t>(size));
    // This rank's columns of all of them; each rank's rows back to it, and this rank's from every rank's columns.
    const int64_t columns = first_[comm.rank() + 1] - first_[comm.rank()];
    out_.resize(static_cast<size_t>(total * columns));
    part_.run(rows_, total, out_);
    for (int r = 0; r < size; ++r) {
        send_counts[r] = mpi::to_int_count(static_cast<size_t>(counts[r] / d_ * columns), "LM head logits");
        recv_counts[r] = mpi::to_int_count(static_cast<size_t>(m * (first_[r + 1] - first_[r])), "LM head logits");
    }
    back_.resize(static_cast<size_t>(m) * vocab_);
    mpi::alltoallv_known<float>(comm, out_, send_counts, back_, recv_counts);
    size_t at = 0;
    for (int r = 0; r < size; ++r) {
        const int64_t width = first_[r + 1] - first_[r];
        for (int64_t i = 0; i < m; ++i, at += static_cast<size_t>(width))
            std::copy_n(back_.begin() + static_cast<std::ptrdiff_t>(at), width,
                        logits.begin() + static_cast<std::ptrdiff_t>(i * vocab_ + first_[r]));
    }
}

}  // namespace epmoe
