// `epmoe run`: the MoE stack on hidden states (synthetic, or --input's rows): per step the forward pass, then
// the job's energy reading and coordinator round (app/job.hpp); the dump after the last step.
#include "app/run.hpp"

#include <memory>

#include "app/dump.hpp"
#include "app/job.hpp"

namespace epmoe {

Json run_job(const mpi::Comm& world, const Config& config, bool print_summary) {
    std::unique_ptr<TokenSource> workload;  // made once the model's width is known, before the model loads
    Job job(world, config, [&](const ModelShape& shape) {
        workload = std::make_unique<TokenSource>(world, config, shape.d_model);
        return workload->num_tokens();
    });
    job.note_unchecked_budget("run");
    const ModelShape& shape = job.shape();
    std::vector<float> h(static_cast<size_t>(workload->num_tokens()) * shape.d_model);
    const int steps = config.workload.steps;
    for (int step = 0; step < steps; ++step) {
        workload->fill(step, h);
        const double t0 = mpi::wtime();
        StepResult result =
            job.forward().step(world, h, workload->first_token(), workload->step_tokens(), job.biases());
        job.end_step(step, steps, t0, result, workload->num_tokens());
        if (step + 1 == steps && !config.output.dump.empty())
            dump_output(world, config.output.dump, shape, h, result.routing);
    }
    return job.finish(print_summary);
}

int run(const mpi::Comm& world, const Config& config) {
    run_job(world, config, true);
    return 0;
}

}  // namespace epmoe
