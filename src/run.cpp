#include "epmoe/run.hpp"

#include <cblas.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>

#include "epmoe/coordinator.hpp"
#include "epmoe/forward.hpp"
#include "epmoe/placement.hpp"
#include "epmoe/results.hpp"
#include "epmoe/run_summary.hpp"
#include "epmoe/synthetic.hpp"

namespace epmoe {
namespace {

// A batch job that asked for several tasks but started this process alone (e.g. MPICH under
// `srun --mpi=pmix`) would silently run P copies of a 1-rank job.
void check_launch(const mpi::Comm& world) {
    const char* ntasks = std::getenv("SLURM_NTASKS");
    if (ntasks && std::getenv("SLURM_STEP_ID") && std::atoi(ntasks) > 1 && world.size() == 1)
        fail("SLURM_NTASKS=", ntasks, " but MPI started a world of 1 rank: the launcher and the MPI library do not "
             "match (MPICH needs srun --mpi=pmi2, Open MPI srun --mpi=pmix); see launchers/slurm/epmoe.sbatch");
}

void check_supported(const Config& config) {
    if (!config.model.path.empty())
        fail("model.path = \"", config.model.path, "\": loading Hugging Face checkpoints is not implemented yet");
    if (!config.workload.input.empty())
        fail("workload.input = \"", config.workload.input, "\": --input is not implemented yet");
    if (!config.output.dump.empty())
        fail("output.dump = \"", config.output.dump, "\": --dump-output is not implemented yet");
}

// Rank 0's progress line every few seconds on long runs.
class Progress {
public:
    Progress(bool enabled, double interval_s) : enabled_(enabled), interval_s_(interval_s), last_(mpi::wtime()) {}
    void update(int step, int steps, const RunSummary& summary) {
        double now = mpi::wtime();
        if (!enabled_ || now - last_ < interval_s_) return;
        last_ = now;
        double s = summary.seconds_so_far();
        std::fprintf(stderr, "epmoe: step %d/%d, %.0f tokens/s so far\n", step + 1, steps,
                     s > 0 ? summary.tokens_so_far() / s : 0.0);
    }

private:
    bool enabled_;
    double interval_s_, last_;
};

}  // namespace

int run(const mpi::Comm& world, const Config& config) {
    const int rank = world.rank(), num_ranks = world.size();
    mpi::all_or_none(world, [&] {
        check_launch(world);
        check_supported(config);
    });
    openblas_set_num_threads(config.threads_per_rank);
    const ModelShape shape = ModelShape::from_config(config.model);
    const Placement placement = Placement::make(config.placement, shape.num_experts, num_ranks);
    const Model model = make_synthetic_model(shape, config.seed, [&](int, int e) { return placement.owns(rank, e); });
    const SyntheticWorkload workload(config.workload, shape.d_model, config.seed);

    std::unique_ptr<ResultsWriter> writer;
    std::string dir;
    mpi::all_or_none(world, [&] {
        if (rank != 0) return;
        dir = config.output.dir.empty() ? default_results_dir(config.policy) : config.output.dir;
        writer = std::make_unique<ResultsWriter>(dir);
    });

    const int64_t tokens = config.workload.tokens_per_rank, first_token = rank * tokens;
    const int64_t step_tokens = tokens * num_ranks;
    Forward forward(model, placement, config.capacity_factor);
    Coordinator coordinator(world, shape.num_layers, shape.num_experts, make_policy(config));
    RunSummary summary(num_ranks, shape.num_layers, shape.num_experts, shape.expert_flops_per_token());
    Progress progress(rank == 0 && !config.output.quiet, config.output.progress_interval_s);
    std::vector<float> h(static_cast<size_t>(tokens) * shape.d_model);  // [tokens, d_model]
    std::vector<double> pending_times;
    std::vector<float> step_biases(coordinator.biases().begin(), coordinator.biases().end());
    int first_pending = 0;

    const int steps = config.workload.steps;
    for (int step = 0; step < steps; ++step) {
        workload.fill(step, first_token, tokens, h);
        double t0 = mpi::wtime();
        StepResult result = forward.step(world, h, first_token, step_tokens, coordinator.biases());
        RankRecord record(shape.num_layers);
        record[RankRecord::kTokens] = static_cast<double>(tokens);
        record[RankRecord::kGate] = result.times.gate;
        record[RankRecord::kDispatch] = result.times.dispatch;
        record[RankRecord::kExpert] = result.times.expert;
        record[RankRecord::kCombine] = result.times.combine;
        record[RankRecord::kCompute] = mpi::wtime() - t0;
        record[RankRecord::kExpertFlops] = result.expert_flops;
        for (int l = 0; l < shape.num_layers; ++l) record.rows(l) = static_cast<double>(result.layers[l].rows_processed);
        coordinator.record(record, result);
        const bool last = step + 1 == steps;
        if (last || (step + 1) % config.coordinator_every_n_steps == 0) {
            CoordinatorReport report = coordinator.round(step);
            pending_times.push_back(mpi::wtime() - t0);
            if (rank == 0) writer->append_step(summary.add_round(report, first_pending, pending_times, step_biases));
            pending_times.clear();
            first_pending = step + 1;
            step_biases.assign(coordinator.biases().begin(), coordinator.biases().end());
        } else {
            pending_times.push_back(mpi::wtime() - t0);
        }
        progress.update(step, steps, summary);
    }

    mpi::all_or_none(world, [&] {
        if (rank != 0) return;
        Json s = summary.summary(config.policy);
        s["model"] = {{"num_layers", shape.num_layers}, {"d_model", shape.d_model}, {"d_ff", shape.d_ff},
                      {"num_experts", shape.num_experts}, {"top_k", shape.top_k}, {"source", "synthetic"}};
        s["placement"] = placement.name();
        s["capacity_factor"] = config.capacity_factor;
        writer->finish(config.json, s);
        std::cout << summary.human(s) << "results: " << dir << std::endl;
    });
    return 0;
}

}  // namespace epmoe
