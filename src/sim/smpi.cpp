// The SMPI build's side of sim.hpp (compiled only with -DEPMOE_SMPI=ON, by smpicxx).
#include <smpi/smpi.h>

#include <algorithm>

#include "epmoe/base/error.hpp"
#include "epmoe/base/shape.hpp"
#include "epmoe/sim/sim.hpp"

namespace epmoe::sim {
namespace {

// Expert GEMMs as simulated compute. The platform's host speed is the BLAS rate measured on a real machine
// (simulate.gflops_per_core), so flops / speed is the time the real kernel would take.
class SimulatedKernel final : public MlpKernel {
public:
    std::string name() const override { return "simulated/fp32"; }
    std::string implementation() const override { return "smpi_execute_flops at the platform's host speed"; }

    void prepare(ExpertWeights& w, int, int) const override {
        std::vector<float>().swap(w.w13);  // nothing reads them: free them now
        std::vector<float>().swap(w.w2);
        w.prepared.reset();
        w.prepared_bytes = 0;
    }

    void forward(const ExpertWeights&, int d_model, int d_ff, std::span<const float> x, std::span<float> y,
                 std::vector<float>&) const override {
        execute_mlp(d_model, d_ff, static_cast<int64_t>(x.size() / d_model));
        std::fill(y.begin(), y.end(), 0.0f);  // the modelled output: later layers see h unchanged by experts
    }
};

}  // namespace

bool simulated() { return true; }

void execute_mlp(int d_model, int d_ff, int64_t rows) {
    // _benched: stop SMPI's timer of host code first, or the wall time of every other simulated rank that runs
    // meanwhile would be injected into this rank's clock as host compute.
    if (rows > 0)
        smpi_execute_flops_benched(ModelShape::mlp_flops_per_token(d_model, d_ff) * static_cast<double>(rows));
}

std::shared_ptr<const MlpKernel> simulated_kernel() {
    static const std::shared_ptr<const MlpKernel> kernel = std::make_shared<SimulatedKernel>();
    return kernel;
}

void* buffer_alloc(size_t bytes) {
    void* p = SMPI_SHARED_MALLOC(bytes ? bytes : 1);
    if (!p) throw std::bad_alloc();
    return p;
}

void buffer_free(void* p) { SMPI_SHARED_FREE(p); }

}  // namespace epmoe::sim
