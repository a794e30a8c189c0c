// The rank's set-up and the per-step bookkeeping every command shares (job.hpp).
#include "app/job.hpp"

#include <sys/statvfs.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>

#include "app/platform.hpp"
#include "app/version.hpp"
#include "epmoe/comm/topology.hpp"
#include "epmoe/model/host_experts.hpp"
#include "epmoe/sim/sim.hpp"

namespace epmoe {
namespace {

// A batch job that asked for several tasks but started this process alone (e.g. MPICH under
// `srun --mpi=pmix`) would silently run P copies of a 1-rank job.
void check_launch(const mpi::Comm& world) {
    const char* ntasks = std::getenv("SLURM_NTASKS");
    if (ntasks && std::getenv("SLURM_STEP_ID") && std::atoi(ntasks) > 1 && world.size() == 1)
        fail("SLURM_NTASKS=", ntasks,
             " but MPI started a world of 1 rank: the launcher and the MPI library do not "
             "match (MPICH needs srun --mpi=pmi2, Open MPI srun --mpi=pmix); see launchers/slurm/epmoe.sbatch");
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
    for (int l = 0; l < num_layers; ++l) {
        record.rows(l) = static_cast<double>(result.layers[l].rows_processed);
        record[RankRecord::kSentBytesOnHost] += result.layers[l].sent_bytes_on_host;
        record[RankRecord::kSentBytesOffHost] += result.layers[l].sent_bytes_off_host;
        record[RankRecord::kRowsRun] += static_cast<double>(result.layers[l].rows_run);
    }
    return record;
}

// The coordinator's view of each layer's load in one step: [num_layers].
std::vector<LayerLoad> layer_loads(const StepResult& result) {
    std::vector<LayerLoad> out;
    for (const LayerResult& r : result.layers) out.push_back({r.expert_load, r.dropped, r.assigned});
    return out;
}

// Energy keys of summary.json beyond the contract's: why this source, and the estimate's coefficients.
Json energy_details(const Config& config, const HostEnergy& energy) {
    Json details = {{"reason", energy.reason()}, {"num_hosts", energy.num_hosts()}};
    const EnergyEstimate& e = config.energy.estimate;
    if (energy.source() == "estimated")
        details["estimate"] = {
            {"pj_per_flop", e.pj_per_flop}, {"pj_per_byte", e.pj_per_byte}, {"idle_w_per_core", e.idle_w_per_core}};
    return details;
}

// [num_layers] 1 for each MoE layer, 0 for a dense one.
std::vector<uint8_t> moe_layers(const Model& model) {
    std::vector<uint8_t> out;
    for (const MoeLayer& layer : model.layers) out.push_back(layer.dense ? 0 : 1);
    return out;
}

// resources.exchange resolved: auto is shm with one chunk outside the simulation (SMPI's ranks share no
// window) and a flat exchange between hosts, else mpi.
std::string exchange_of(const Config& config) {
    if (config.exchange == "shm" && sim::simulated())
        fail("config key resources.exchange = \"shm\": simulated ranks share no memory window (use mpi or auto)");
    if (config.exchange != "auto") return config.exchange;
    return config.compute.overlap_chunks == 1 && !sim::simulated() && config.inter_host == "flat" ? "shm" : "mpi";
}

// resources.work_sharing resolved: host or none.
std::string work_sharing_of(const Config& config) {
    const bool shm = exchange_of(config) == "shm";
    if (config.work_sharing == "host" && !shm)
        fail(
            "config key resources.work_sharing = \"host\": needs the shared-memory exchange, and resources.exchange "
            "resolves to mpi here (compute.overlap_chunks > 1, resources.inter_host = two_level or a simulation)");
    return config.work_sharing == "none" || !shm ? "none" : "host";
}

// Free bytes of /dev/shm, where Open MPI and MPICH put shared windows on Linux; unbounded where it is absent.
uint64_t shared_memory_room() {
    struct statvfs fs;
    if (statvfs("/dev/shm", &fs) != 0) return std::numeric_limits<uint64_t>::max();
    return static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
}

// The loaded model, its experts moved into a window over each host's ranks where they share work; work_sharing
// receives host or none. Where /dev/shm cannot hold a host's experts (a container's 64 MiB, say), auto runs
// without sharing and says so, and host is an error: a window past the room left faults when first touched.
Model shared_if_asked(const mpi::Comm& world, const Config& config, Model model, std::string& work_sharing) {
    work_sharing = work_sharing_of(config);
    if (work_sharing != "host") return model;
    const uint64_t need = host_expert_bytes(world, model), room = shared_memory_room();
    // Every rank learns the first failing host's reason, so the job ends on one agreed line (an abort races
    // the other ranks' output).
    std::string why;
    try {
        mpi::all_or_none(world, [&] {
            if (need > room)
                fail("the experts of host ", mpi::processor_name(), " take ", need >> 20,
                     " MiB of shared memory and its /dev/shm has ", room >> 20, " MiB free");
        });
    } catch (const AgreedError& e) {
        why = e.what();
    }
    if (why.empty()) {
        share_experts_on_host(world, model);
        return model;
    }
    if (config.work_sharing == "host")
        throw AgreedError(
            cat("config key resources.work_sharing = \"host\": ", why, "; use resources.work_sharing=none"));
    if (world.rank() == 0 && !config.output.quiet)
        std::fprintf(stderr, "epmoe: note: resources.work_sharing = auto runs as none: %s\n", why.c_str());
    work_sharing = "none";
    return model;
}

// summary.json's "compute": the kernel that ran and how the rank was set up.
Json compute_json(const Config& config, const Model& model, const std::string& binding,
                  const std::string& work_sharing) {
    return {{"backend", config.compute.backend},
            {"dtype", config.compute.dtype},
            {"pack_weights", config.compute.pack_weights},
            {"weight_panel_kib", config.compute.weight_panel_kib},
            {"kernel", model.kernel->name()},
            {"implementation", model.kernel->implementation()},
            {"threads_per_rank", config.threads_per_rank},
            {"expert_threads", config.expert_threads},
            {"bind", config.bind},
            {"rank0_binding", binding},
            {"mpi_wait", mpi::wait_mode() == mpi::WaitMode::kBlock ? "block" : "yield"},
            {"overlap_chunks", config.compute.overlap_chunks},
            {"exchange", exchange_of(config)},
            {"inter_host", config.inter_host},
            {"work_sharing", work_sharing}};
}

// The hosts of the job in order of their first rank, each with its ranks: [{"name", "ranks"}]. Collective.
Json host_names(const mpi::Comm& world) {
    const std::vector<std::string> names = mpi::allgather_strings(world, mpi::processor_name());
    Json hosts = Json::array();
    for (size_t r = 0; r < names.size(); ++r) {
        auto it = std::find_if(hosts.begin(), hosts.end(), [&](const Json& h) { return h["name"] == names[r]; });
        if (it == hosts.end()) hosts.push_back({{"name", names[r]}, {"ranks", Json::array()}}), it = hosts.end() - 1;
        (*it)["ranks"].push_back(r);
    }
    return hosts;
}

}  // namespace

// Checks the launch, binds the rank (resources.bind), picks the wait mode and sets the GEMM threads.
// Returns this rank's binding ("none" unless bound). Collective.
std::string set_up_rank(const mpi::Comm& world, const Config& config) {
    mpi::all_or_none(world, [&] {
        check_launch(world);
        // A results directory of an earlier run is refused before anything is loaded.
        if (world.rank() == 0 && !config.output.dir.empty())
            check_results_dir(config.output.dir, config.output.overwrite);
    });
    const mpi::Comm host = world.split_shared();  // the ranks of this host: binding and the wait mode
    std::string binding = "none";
    if (config.bind == "core")
        mpi::all_or_none(world, [&] { binding = bind_to_cores(host.rank(), host.size(), config.threads_per_rank); });
    mpi::set_wait_mode(pick_wait_mode(world, host, config));
    set_compute_threads(config.threads_per_rank);  // OpenBLAS and oneDNN
    return binding;
}

Job::Job(const mpi::Comm& world, const Config& config, const std::function<int64_t(const ModelShape&)>& tokens_per_rank,
         bool whole_model)
    : world_(world),
      config_(config),
      binding_(set_up_rank(world, config)),
      source_(world, config, whole_model),
      shape_(source_.shape()),
      placement_(run_placement(world, config, shape_.num_experts)),
      model_(
          shared_if_asked(world, config,
                          source_.load(
                              world, [&](int e) { return placement_.owns(world.rank(), e); }, tokens_per_rank(shape_)),
                          work_sharing_)),
      energy_(world, config.energy),
      forward_(model_, placement_, config.routing.capacity_factor),
      coordinator_(world, shape_.num_layers, shape_.num_experts,
                   make_policy(config.policy, policy_context(config, placement_, shape_.num_layers))),
      summary_(world.size(), moe_layers(model_), shape_.num_experts, shape_.expert_flops_per_token()),
      progress_enabled_(world.rank() == 0 && !config.output.quiet),
      progress_last_(mpi::wtime()) {
    forward_.set_fidelity_sample(config.routing.fidelity_sample_every);
    forward_.set_overlap_chunks(config.compute.overlap_chunks);
    forward_.set_expert_threads(config.expert_threads == "tasks" ? config.threads_per_rank : 1);
    forward_.set_shared_exchange(exchange_of(config) == "shm");
    forward_.set_work_sharing(work_sharing_ == "host");
    forward_.set_two_level(config.inter_host == "two_level");
    step_biases_.assign(coordinator_.biases().begin(), coordinator_.biases().end());
    if (config.policy.name == "ttt") start_ttt();
    hosts_ = host_names(world);
    started_utc_ = utc_now();
    if (world.rank() == 0 && !config.output.quiet)
        std::fprintf(stderr, "epmoe: energy source %s: %s\n", energy_.source().c_str(), energy_.reason().c_str());
    mpi::all_or_none(world, [&] {
        if (world.rank() != 0) return;
        dir_ = config.output.dir.empty() ? default_results_dir(config.policy.name) : config.output.dir;
        writer_ = std::make_unique<ResultsWriter>(dir_, config.output.overwrite);
    });
}

Job::~Job() = default;

// --policy ttt: the router correction every MoE layer routes with, trained after each step.
void Job::start_ttt() {
    mpi::all_or_none(world_, [&] {
        if (shape_.gate != GateKind::kSoftmax)
            fail(
                "policy.name = ttt: the fidelity term is a KL divergence between softmax distributions; model.gate "
                "sigmoid is not supported");
    });
    ttt_ = std::make_unique<TestTimeRouter>(config_.policy.ttt, shape_, moe_layers(model_), placement_, config_.seed,
                                            energy_.source());
    forward_.set_adaptation(&ttt_->adaptation());
}

void Job::note_unchecked_budget(const char* command) const {
    if (ttt_ && world_.rank() == 0 && !config_.output.quiet)
        std::fprintf(stderr,
                     "epmoe: note: policy ttt: policy.ttt.max_delta_ppl is checked by `epmoe eval` only (held-out "
                     "perplexity); `epmoe %s` adapts the router without that budget\n",
                     command);
}

void Job::end_step(int step, int steps, double t0, const StepResult& result, int64_t tokens, double extra_flops) {
    if (ttt_ && step + 1 < steps && (step + 1) % config_.coordinator_every_n_steps == 0)
        ttt_->update(world_, result);  // in the step's time: the next step needs it
    else if (ttt_)
        ttt_->skip();
    const double compute_s = mpi::wtime() - t0 - result.fidelity.seconds;  // fidelity work is timed apart
    WorkCounters work{result.expert_flops + result.gate_flops + extra_flops, result.bytes_moved,
                      compute_s * config_.threads_per_rank};
    const double energy_t0 = mpi::wtime();  // the energy exchange is the coordinator's work: timed with it
    StepEnergy step_energy = energy_.step(result.times.gate + result.times.expert, work);
    pending_energy_s_ += mpi::wtime() - energy_t0;
    if (ttt_)
        ttt_->note_energy(step_energy.rank_joules.value_or(std::numeric_limits<double>::quiet_NaN()),
                          step_energy.host_power_w.value_or(std::numeric_limits<double>::quiet_NaN()), result);
    coordinator_.record(make_record(result, shape_.num_layers, tokens, compute_s, step_energy), layer_loads(result));
    if (step + 1 == steps || (step + 1) % config_.coordinator_every_n_steps == 0)
        round(step, t0, result);
    else
        pending_times_.push_back(mpi::wtime() - t0 - result.fidelity.seconds);
    const double now = mpi::wtime();
    if (progress_enabled_ && now - progress_last_ >= config_.output.progress_interval_s) {
        progress_last_ = now;
        const double s = summary_.seconds_so_far();
        std::fprintf(stderr, "epmoe: step %d/%d, %.0f tokens/s so far\n", step + 1, steps,
                     s > 0 ? static_cast<double>(summary_.tokens_so_far()) / s : 0.0);
    }
}

Json Job::finish(bool print_summary, const std::function<void(Json&, ResultsWriter&)>& extend) {
    const Json memory = source_.memory(world_, model_);
    Json out;
    mpi::all_or_none(world_, [&] {
        if (world_.rank() != 0) return;
        Json s = summary_.summary(config_.policy.name, energy_.source(), energy_details(config_, energy_));
        s["model"] = source_.describe();
        s["memory"] = memory;
        s["compute"] = compute_json(config_, model_, binding_, work_sharing_);
        s["placement"] = placement_.name();
        s["capacity_factor"] = config_.routing.capacity_factor;
        s["run"] = {
            {"epmoe_version", version()},  {"git_describe", git_describe()}, {"command_line", config_.command_line},
            {"started_utc", started_utc_}, {"finished_utc", utc_now()},      {"hosts", hosts_}};
        s = label_simulated(std::move(s), config_, world_.size(), true);  // build-smpi/epmoe: simulated times
        if (ttt_) s["ttt"] = ttt_->summary();
        if (extend) extend(s, *writer_);
        writer_->finish(*config_.json, s);
        if (print_summary)
            std::cout << (s.contains("simulated") ? "simulated under SimGrid SMPI: every time is simulated seconds\n"
                                                  : "")
                      << summary_.human(s) << "results: " << dir_ << std::endl;
        out = s;
    });
    return out;
}

// A coordinator round after `step` (started at t0): rank 0 appends the metrics line of the steps it covers.
void Job::round(int step, double t0, const StepResult& result) {
    CoordinatorReport report = coordinator_.round(step);
    report.seconds += pending_energy_s_;
    pending_energy_s_ = 0;
    pending_times_.push_back(mpi::wtime() - t0 - result.fidelity.seconds);
    if (world_.rank() == 0) {
        Json line = summary_.add_round(report, first_pending_, pending_times_, step_biases_);
        if (ttt_) line["ttt"] = ttt_->figures();
        writer_->append_step(label_simulated(std::move(line), config_, world_.size(), false));
    }
    pending_times_.clear();
    first_pending_ = step + 1;
    step_biases_.assign(coordinator_.biases().begin(), coordinator_.biases().end());
}

}  // namespace epmoe
