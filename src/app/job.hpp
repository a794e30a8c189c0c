// What every command that runs the model shares: the rank set up (binding, wait mode, threads), the model
// loaded with this rank's experts, the placement, the energy readers, the coordinator and its policy, rank 0's
// bookkeeping and results directory. `epmoe run` drives it with hidden states, `eval` and `generate` with
// tokens through the whole decoder.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "app/run_inputs.hpp"
#include "app/run_summary.hpp"
#include "epmoe/base/config.hpp"
#include "epmoe/comm/mpi.hpp"
#include "epmoe/control/coordinator.hpp"
#include "epmoe/control/ttt.hpp"
#include "epmoe/energy/energy.hpp"
#include "epmoe/io/results.hpp"
#include "epmoe/model/forward.hpp"

namespace epmoe {

// Checks the launch, binds the rank (resources.bind), picks the wait mode and sets the GEMM threads. Returns
// this rank's binding ("none" unless bound). Collective.
std::string set_up_rank(const mpi::Comm& world, const Config& config);

class Job {
public:
    // tokens_per_rank(shape): the most tokens a rank runs at once, for the host memory check; called after the
    // checkpoint is opened and before anything is loaded (it may read the inputs). whole_model: as ModelSource.
    // Collective.
    Job(const mpi::Comm& world, const Config& config, const std::function<int64_t(const ModelShape&)>& tokens_per_rank,
        bool whole_model = false);
    ~Job();

    const ModelShape& shape() const { return shape_; }
    const Model& model() const { return model_; }
    ModelSource& source() { return source_; }
    Forward& forward() { return forward_; }
    const Placement& placement() const { return placement_; }
    std::span<const float> biases() const { return coordinator_.biases(); }  // [L, E] the next step's
    TestTimeRouter* ttt() { return ttt_.get(); }  // --policy ttt's router correction, else null
    // --policy ttt outside eval: rank 0 says once that policy.ttt.max_delta_ppl is not checked by `command`.
    void note_unchecked_budget(const char* command) const;

    // After step `step` of `steps` (started at t0, `tokens` rows on this rank, result its MoE blocks';
    // extra_flops: FLOPs outside the MoE blocks, for the energy estimate): energy, the coordinator's record,
    // its round when due (rank 0 appends the metrics line), the progress line. Collective.
    void end_step(int step, int steps, double t0, const StepResult& result, int64_t tokens, double extra_flops = 0);

    // Writes summary.json (rank 0), after `extend` added the command's own keys and files (rank 0 only), and
    // returns it there; null elsewhere. Collective.
    Json finish(bool print_summary, const std::function<void(Json& summary, ResultsWriter& writer)>& extend = {});

    // Seconds of the steps so far (rank 0's), and the tokens they ran over all ranks.
    double seconds_so_far() const { return summary_.seconds_so_far(); }

private:
    void start_ttt();
    void round(int step, double t0, const StepResult& result);

    const mpi::Comm& world_;
    const Config& config_;
    const std::string binding_;  // resources.bind = core: this rank's cores
    ModelSource source_;         // synthetic, or a checkpoint's selected layers
    const ModelShape shape_;
    const Placement placement_;
    std::string work_sharing_;  // resources.work_sharing resolved (host or none), set as model_ is made
    const Model model_;
    HostEnergy energy_;
    Forward forward_;
    Coordinator coordinator_;
    std::unique_ptr<TestTimeRouter> ttt_;  // --policy ttt
    RunSummary summary_;
    bool progress_enabled_;  // rank 0, not quiet: a progress line every output.progress_interval_s
    double progress_last_;
    std::unique_ptr<ResultsWriter> writer_;  // rank 0
    std::string dir_;                        // the results directory (rank 0)
    Json hosts_;                             // [{name, ranks}] in order of first rank
    std::string started_utc_;
    std::vector<double> pending_times_;  // rank 0's wall time of the steps since the last coordinator round
    std::vector<float> step_biases_;     // [L, E] the biases the pending steps used
    int first_pending_ = 0;
    double pending_energy_s_ = 0;  // energy exchanges since the last coordinator round, s
};

}  // namespace epmoe
