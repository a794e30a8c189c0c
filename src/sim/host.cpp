// The ordinary build's side of sim.hpp: nothing is simulated.
#include <cstdlib>

#include "epmoe/base/error.hpp"
#include "epmoe/sim/sim.hpp"

namespace epmoe::sim {

bool simulated() { return false; }

std::shared_ptr<const MlpKernel> simulated_kernel() {
    fail("the simulated expert kernel exists only in the SMPI build (cmake -DEPMOE_SMPI=ON, build-smpi/epmoe)");
}

void execute_mlp(int, int, int64_t) {
    fail("simulated expert compute exists only in the SMPI build (cmake -DEPMOE_SMPI=ON, build-smpi/epmoe)");
}

void* buffer_alloc(size_t bytes) {
    void* p = std::malloc(bytes ? bytes : 1);
    if (!p) throw std::bad_alloc();
    return p;
}

void buffer_free(void* p) { std::free(p); }

}  // namespace epmoe::sim
