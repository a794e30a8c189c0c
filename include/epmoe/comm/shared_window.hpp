// One MPI-3 shared-memory window over the ranks of a host (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED),
// MPI_Win_allocate_shared): every rank of the host reads and writes every other rank's segment with plain
// loads and stores. What a rank writes before sync() is what the others read after it.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "epmoe/comm/mpi.hpp"

namespace epmoe::mpi {

// bytes rounded up to 64: each part of a segment starts a cache line of its own.
inline size_t segment_part_bytes(size_t bytes) { return (bytes + 63) / 64 * 64; }

class SharedWindow {
public:
    // The window over the ranks of comm that share this rank's host; no segment yet. Collective over comm.
    explicit SharedWindow(const Comm& comm);
    ~SharedWindow();
    SharedWindow(const SharedWindow&) = delete;
    SharedWindow& operator=(const SharedWindow&) = delete;

    // This rank's host rank of comm's rank r, -1 when r runs on another host.
    int host_rank_of(int r) const { return host_rank_of_[r]; }
    int host_rank() const { return host_.rank(); }
    int host_size() const { return host_.size(); }
    // Every rank of comm is on this host (then the same on every rank).
    bool whole_comm() const { return whole_comm_; }
    // Makes every segment hold at least the most bytes any rank of the host asks for; a window that grows is
    // freed and allocated anew (contents lost, segment pointers change), with a quarter spare unless told not
    // to. Collective over the host.
    void reserve(size_t bytes, bool spare = true);
    // The segment of host rank h, valid until reserve() grows the window.
    char* segment(int h) const { return segments_[h]; }
    // Stores before it are visible to every rank of the host after it (MPI_Win_sync, barrier, MPI_Win_sync).
    // Collective over the host.
    void sync() const;

private:
    void free_window();
    Comm host_;
    std::vector<int> host_rank_of_;  // [comm.size()]
    MPI_Win win_ = MPI_WIN_NULL;
    std::vector<char*> segments_;  // [host.size()]
    size_t capacity_ = 0;
    bool whole_comm_ = false;
};

}  // namespace epmoe::mpi
