// What changes when epmoe runs as simulated ranks under SimGrid's SMPI (the EPMOE_SMPI build,
// build-smpi/epmoe, started by `epmoe simulate`): the expert GEMMs become smpi_execute_flops at the
// calibrated rate, expert weights are never allocated, and the large token buffers are shared by all
// simulated ranks (their contents are not meaningful). Gate, top-k, pack/unpack, the coordinator and the
// policies run for real. The rest of epmoe calls these functions and never tests EPMOE_SMPI itself.
// src/sim/host.cpp is the ordinary build's side, src/sim/smpi.cpp the SMPI build's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "epmoe/ops/mlp_kernel.hpp"

namespace epmoe::sim {

// True in the SMPI build: ranks are simulated and MPI_Wtime is simulated time.
bool simulated();

// The SMPI build's MLP kernel: prepare() drops the weights, forward() advances the rank's simulated clock
// by 6 * d_model * d_ff * rows FLOPs (smpi_execute_flops, at the platform's host speed) and writes zeros.
// Fails in the ordinary build.
std::shared_ptr<const MlpKernel> simulated_kernel();

// Advances this simulated rank's clock by one SwiGLU MLP over `rows` rows (6 * d_model * d_ff * rows FLOPs,
// smpi_execute_flops), touching no data: dispatch calls it in place of gathering an expert's rows, running
// the kernel and scattering the (meaningless) results. Fails in the ordinary build.
void execute_mlp(int d_model, int d_ff, int64_t rows);

// Bytes for a token buffer: SMPI_SHARED_MALLOC in the SMPI build (one physical copy for all simulated
// ranks), plain heap otherwise. Never null; throws std::bad_alloc.
void* buffer_alloc(size_t bytes);
void buffer_free(void* p);

// std::allocator over buffer_alloc, for std::vector token buffers.
template <typename T>
struct BufferAllocator {
    using value_type = T;
    BufferAllocator() = default;
    template <typename U>
    BufferAllocator(const BufferAllocator<U>&) {}
    T* allocate(size_t n) { return static_cast<T*>(buffer_alloc(n * sizeof(T))); }
    void deallocate(T* p, size_t) { buffer_free(p); }
    // resize() default-initialises (no zero fill): the contents are meaningless, and writing them would map
    // every shared page into every simulated rank.
    template <typename U>
    void construct(U* p) noexcept {
        ::new (static_cast<void*>(p)) U;
    }
    template <typename U, typename... Args>
    void construct(U* p, Args&&... args) {
        ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
    template <typename U>
    bool operator==(const BufferAllocator<U>&) const {
        return true;
    }
};

// A float buffer of token rows, [rows, d_model]: shared among simulated ranks in the SMPI build, a plain
// std::vector<float> in the ordinary build (so the ordinary build's types do not change).
#ifdef EPMOE_SMPI
using TokenBuffer = std::vector<float, BufferAllocator<float>>;
#else
using TokenBuffer = std::vector<float>;
#endif

}  // namespace epmoe::sim
