#include "app/run.hpp"

#include <cblas.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>

#include "epmoe/control/coordinator.hpp"
#include "app/dump.hpp"
#include "epmoe/energy/energy.hpp"
#include "epmoe/model/forward.hpp"
#include "epmoe/moe/placement.hpp"
#include "epmoe/io/results.hpp"
#include "app/run.hpp"
#include "app/run_inputs.hpp"
#include "app/run_summary.hpp"
#include "app/simulate.hpp"
#include "epmoe/comm/topology.hpp"

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

// One step's record for the coordinator.
RankRecord make_record(const StepResult& result, int num_layers, int64_t tokens, double compute_s,
                       const StepEnergy& energy) {
    RankRecord record(num_layers);
    record[RankRecord::kTokens] = static_cast<double>(tokens);
    record[RankRecord::kGate] = result.times.gate;
    record[RankRecord::kDispatch] = result.times.dispatch;
    record[RankRecord::kExpert] = result.times.expert;
    record[RankRecord::kCombine] = result.times.combine;
    record[RankRecord::kCompute] = compute_s;
    record[RankRecord::kExpertFlops] = result.expert_flops;
    if (energy.rank_joules) record[RankRecord::kJoules] = *energy.rank_joules;
    if (energy.host_joules) record[RankRecord::kHostJoules] = *energy.host_joules;
    if (energy.host_power_w) record[RankRecord::kPowerW] = *energy.host_power_w;
    if (energy.host_temp_c) record[RankRecord::kTempC] = *energy.host_temp_c;
    record.set_fidelity(result.fidelity);
    for (int l = 0; l < num_layers; ++l) record.rows(l) = static_cast<double>(result.layers[l].rows_processed);
    return record;
}

// Energy keys of summary.json beyond the contract's: why this source, and the estimate's coefficients.
Json energy_details(const Config& config, const HostEnergy& energy) {
    Json details = {{"reason", energy.reason()}, {"hosts", energy.num_hosts()}};
    if (energy.source() == "estimated") details["estimate"] = config.json.at("energy").at("estimate");
    return details;
}

// resources.mpi_wait. auto: block in collectives when every host has at least one PU (in the union of its
// ranks' bindings) for each rank's threads, else yield. Every rank gets the same mode (a blocking collective
// does not match a non-blocking one). host: this rank's host (world.split_shared()). Collective over world.
mpi::WaitMode pick_wait_mode(const mpi::Comm& world, const mpi::Comm& host, const Config& config) {
    if (config.mpi_wait != "auto") return config.mpi_wait == "block" ? mpi::WaitMode::kBlock : mpi::WaitMode::kYield;
    const int pus = count_pus(mpi::allgather_strings(host, cpu_binding()));
    const int fits = mpi::allreduce_one(world, host.size() * config.threads_per_rank <= pus ? 1 : 0, mpi::Op::kMin);
    return fits ? mpi::WaitMode::kBlock : mpi::WaitMode::kYield;
}

}  // namespace

Json run_job(const mpi::Comm& world, const Config& config, bool print_summary) {
    const int rank = world.rank(), num_ranks = world.size();
    mpi::all_or_none(world, [&] { check_launch(world); });
    const mpi::Comm host = world.split_shared();  // the ranks of this host: binding and the wait mode
    std::string binding = "none";                  // resources.bind = core: this rank's cores
    if (config.bind == "core")
        mpi::all_or_none(world, [&] { binding = bind_to_cores(host.rank(), host.size(), config.threads_per_rank); });
    mpi::set_wait_mode(pick_wait_mode(world, host, config));
    set_compute_threads(config.threads_per_rank);  // OpenBLAS and oneDNN
    ModelSource source(world, config);  // synthetic, or a checkpoint's selected layers
    const ModelShape shape = source.shape();
    const Placement placement = run_placement(world, config, shape.num_experts);
    const Model model = source.load(world, [&](int e) { return placement.owns(rank, e); });
    const TokenSource workload(world, config, shape.d_model);  // synthetic, or --input's rows
    HostEnergy energy(world, config.energy);
    if (rank == 0 && !config.output.quiet)
        std::fprintf(stderr, "epmoe: energy source %s: %s\n", energy.source().c_str(), energy.reason().c_str());

    std::unique_ptr<ResultsWriter> writer;
    std::string dir;
    mpi::all_or_none(world, [&] {
        if (rank != 0) return;
        dir = config.output.dir.empty() ? default_results_dir(config.policy) : config.output.dir;
        writer = std::make_unique<ResultsWriter>(dir);
    });

    const int64_t tokens = workload.num_tokens(), first_token = workload.first_token();
    const int64_t step_tokens = workload.step_tokens();
    Forward forward(model, placement, config.capacity_factor);
    forward.set_fidelity_sample(config.fidelity_sample_every);
    forward.set_overlap_chunks(config.compute.overlap_chunks);
    Coordinator coordinator(world, shape.num_layers, shape.num_experts, 
                            make_policy(config, policy_context(config, placement, shape.num_layers)));
    RunSummary summary(num_ranks, shape.num_layers, shape.num_experts, shape.expert_flops_per_token());
    Progress progress(rank == 0 && !config.output.quiet, config.output.progress_interval_s);
    std::vector<float> h(static_cast<size_t>(tokens) * shape.d_model);  // [tokens, d_model]
    std::vector<double> pending_times;  // rank 0's wall time of the steps since the last coordinator round
    std::vector<float> step_biases(coordinator.biases().begin(), coordinator.biases().end());
    int first_pending = 0;
    double pending_energy_s = 0;  // energy exchanges since the last coordinator round, s

    const int steps = config.workload.steps;
    for (int step = 0; step < steps; ++step) {
        workload.fill(step, h);
        double t0 = mpi::wtime();
        StepResult result = forward.step(world, h, first_token, step_tokens, coordinator.biases());
        double compute_s = mpi::wtime() - t0 - result.fidelity.seconds;  // fidelity work is timed apart
        WorkCounters work{result.expert_flops + result.gate_flops, result.bytes_moved,
                          compute_s * config.threads_per_rank};
        double energy_t0 = mpi::wtime();  // the energy exchange is the coordinator's work: timed with it
        StepEnergy step_energy = energy.step(result.times.gate + result.times.expert, work);
        pending_energy_s += mpi::wtime() - energy_t0;
        coordinator.record(make_record(result, shape.num_layers, tokens, compute_s, step_energy), result);
        if (step + 1 == steps || (step + 1) % config.coordinator_every_n_steps == 0) {
            CoordinatorReport report = coordinator.round(step);
            report.seconds += pending_energy_s;
            pending_energy_s = 0;
            pending_times.push_back(mpi::wtime() - t0 - result.fidelity.seconds);
            if (rank == 0)
                writer->append_step(label_simulated(summary.add_round(report, first_pending, pending_times, step_biases),
                                                    config, num_ranks, false));
            pending_times.clear();
            first_pending = step + 1;
            step_biases.assign(coordinator.biases().begin(), coordinator.biases().end());
        } else {
            pending_times.push_back(mpi::wtime() - t0 - result.fidelity.seconds);
        }
        progress.update(step, steps, summary);
        if (step + 1 == steps && !config.output.dump.empty())
            dump_output(world, config.output.dump, shape, h, result.routing);
    }

    const Json memory = source.memory(world, model);
    Json out;
    mpi::all_or_none(world, [&] {
        if (rank != 0) return;
        Json s = summary.summary(config.policy, energy.source(), energy_details(config, energy));
        s["model"] = source.describe();
        s["memory"] = memory;
        s["compute"] = {{"backend", config.compute.backend}, {"dtype", config.compute.dtype},
                        {"kernel", model.kernel->name()}, {"implementation", model.kernel->implementation()},
                        {"threads_per_rank", config.threads_per_rank}, {"bind", config.bind},
                        {"rank0_binding", binding},
                        {"mpi_wait", mpi::wait_mode() == mpi::WaitMode::kBlock ? "block" : "yield"},
                        {"overlap_chunks", config.compute.overlap_chunks}};
        s["placement"] = placement.name();
        s["capacity_factor"] = config.capacity_factor;
        s = label_simulated(std::move(s), config, num_ranks, true);  // build-smpi/epmoe: simulated times
        writer->finish(config.json, s);
        if (print_summary)
            std::cout << (s.contains("simulated") ? "simulated under SimGrid SMPI: every time is simulated seconds\n" : "")
                      << summary.human(s) << "results: " << dir << std::endl;
        out = s;
    });
    return out;
}

int run(const mpi::Comm& world, const Config& config) {
    run_job(world, config, true);
    return 0;
}

}  // namespace epmoe
