#include "epmoe/comm/shared_window.hpp"

#include <algorithm>
#include <numeric>

#include "check.hpp"

namespace epmoe::mpi {
namespace {

// comm's ranks as ranks of host (MPI_UNDEFINED -> -1).
std::vector<int> translate(const Comm& comm, const Comm& host) {
    MPI_Group from, to;
    check(MPI_Comm_group(comm.raw(), &from), "MPI_Comm_group");
    check(MPI_Comm_group(host.raw(), &to), "MPI_Comm_group");
    std::vector<int> ranks(comm.size()), out(comm.size());
    std::iota(ranks.begin(), ranks.end(), 0);
    check(MPI_Group_translate_ranks(from, comm.size(), ranks.data(), to, out.data()), "MPI_Group_translate_ranks");
    MPI_Group_free(&from);
    MPI_Group_free(&to);
    for (int& r : out)
        if (r == MPI_UNDEFINED) r = -1;
    return out;
}

}  // namespace

SharedWindow::SharedWindow(const Comm& comm)
    : host_(comm.split_shared()),
      host_rank_of_(translate(comm, host_)),
      segments_(host_.size(), nullptr),
      whole_comm_(host_.size() == comm.size()) {}

SharedWindow::~SharedWindow() { free_window(); }

void SharedWindow::free_window() {
    if (win_ == MPI_WIN_NULL) return;
    MPI_Win_unlock_all(win_);
    MPI_Win_free(&win_);
    win_ = MPI_WIN_NULL;
}

void SharedWindow::reserve(size_t bytes, bool spare) {
    const uint64_t most = allreduce_one<uint64_t>(host_, bytes, Op::kMax);
    if (most <= capacity_ && win_ != MPI_WIN_NULL) return;
    free_window();
    // A quarter spare: steps whose counts vary grow it rarely.
    capacity_ = std::max<size_t>(spare ? most + most / 4 : most, 4096);
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "alloc_shared_noncontig", "true");  // each segment on its own pages, near its rank
    void* mine = nullptr;
    check(MPI_Win_allocate_shared(static_cast<MPI_Aint>(capacity_), 1, info, host_.raw(), &mine, &win_),
          "MPI_Win_allocate_shared");
    MPI_Info_free(&info);
    check(MPI_Win_lock_all(MPI_MODE_NOCHECK, win_), "MPI_Win_lock_all");
    for (int h = 0; h < host_.size(); ++h) {
        MPI_Aint size = 0;
        int unit = 0;
        check(MPI_Win_shared_query(win_, h, &size, &unit, &segments_[h]), "MPI_Win_shared_query");
    }
}

void SharedWindow::sync() const {
    check(MPI_Win_sync(win_), "MPI_Win_sync");
    barrier(host_);
    check(MPI_Win_sync(win_), "MPI_Win_sync");
}

}  // namespace epmoe::mpi
