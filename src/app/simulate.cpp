// `epmoe simulate`: the launcher side (the ordinary build, one process). It resolves the config, measures
// the expert GEMM rate when simulate.gflops_per_core is 0, writes platform.xml, hostfile, simulate.json
// (the config the simulated ranks run) and smpirun.sh into the results directory, and runs smpirun on the
// SMPI build, whose rank 0 writes config.json, metrics.jsonl and summary.json there as `run` does.
#include "app/simulate.hpp"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <latch>
#include <numeric>
#include <thread>

#include "app/run_inputs.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/io/results.hpp"
#include "epmoe/model/synthetic.hpp"
#include "epmoe/ops/mlp_kernel.hpp"
#include "epmoe/sim/sim.hpp"

extern char** environ;

namespace epmoe {
namespace {

namespace fs = std::filesystem;

// The SMPI build of epmoe: simulate.binary, else build-smpi/epmoe in the parent of this binary's folder.
std::string smpi_binary(const SimulateConfig& s) {
    fs::path path = s.binary;
    if (path.empty()) {
        std::error_code ec;
        fs::path self = fs::read_symlink("/proc/self/exe", ec);
        path = self.parent_path().parent_path() / "build-smpi" / "epmoe";
    }
    if (!fs::is_regular_file(path))
        fail("simulate.binary: no SMPI build of epmoe at ", path.string(), " (build it with: cmake -S . -B build-smpi ",
             "-DEPMOE_SMPI=ON && cmake --build build-smpi --target epmoe, or set simulate.binary)");
    return fs::absolute(path).string();
}

void write_text(const fs::path& path, const std::string& text) {
    std::ofstream out(path);
    out << text;
    out.close();
    if (!out) fail(path.string(), ": cannot write");
}

// Quotes a word for the shell script that records the command.
std::string shell_word(const std::string& w) {
    if (w.find_first_of(" '\"$\\;&|<>()*?") == std::string::npos) return w;
    std::string out = "'";
    for (char c : w) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

// Runs argv, waits, returns its exit code (128 + signal when killed).
int spawn_and_wait(const std::vector<std::string>& argv) {
    std::vector<char*> raw;
    for (const auto& a : argv) raw.push_back(const_cast<char*>(a.c_str()));
    raw.push_back(nullptr);
    pid_t pid = 0;
    std::fflush(stdout);
    std::fflush(stderr);
    if (posix_spawnp(&pid, raw[0], nullptr, nullptr, raw.data(), environ) != 0)
        fail("simulate.smpirun = ", argv[0], ": cannot start it (install simgrid, or set simulate.smpirun)");
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Rows an expert runs per layer on average: the shape the calibration GEMM uses.
int typical_rows(const Config& config, const ModelShape& shape) {
    double rows =
        static_cast<double>(config.workload.tokens_per_rank) * shape.top_k * config.simulate.ranks / shape.num_experts;
    return static_cast<int>(std::clamp(rows, 16.0, 4096.0));
}

// Resolves the config, checks the inputs, measures the GEMM rate if asked, and writes platform.xml, hostfile and
// simulate.json into the results directory. Sets dir, the SMPI binary, the rate and the rank count.
void prepare(const mpi::Comm& world, const Config& parsed, std::string& dir, std::string& binary, double& gflops,
             int& ranks) {
    Json json = *parsed.json;
    const std::string source = parsed.energy.source;
    if (source == "rapl" || source == "hwmon")
        fail("energy.source = ", source, ": simulated ranks cannot read this machine's sensors; use estimated or none");
    if (source == "auto") apply_set(json, "energy.source=estimated");
    Config config = Config::from_json(json);
    const SimulateConfig& sc = config.simulate;
    binary = smpi_binary(sc);
    dir = config.output.dir.empty() ? default_results_dir(config.policy.name) : config.output.dir;
    check_results_dir(dir, config.output.overwrite);
    ranks = sc.ranks;

    // What rank 0 of the simulation would read first (checkpoint headers, --input, placement.profile), read
    // here, so that bad input is one error line before smpirun starts.
    ModelSource model(world, config);
    TokenSource tokens(world, config, model.shape().d_model);
    run_placement(world, config, model.shape().num_experts);
    gflops = sc.gflops_per_core;
    if (gflops == 0) {
        // The ranks of a simulated node that this machine can run at once, each on its own cores.
        const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
        const int concurrent = std::clamp(cores / config.threads_per_rank, 1, std::min(sc.ranks_per_node, sc.ranks));
        gflops = measure_gflops(config, typical_rows(config, model.shape()), concurrent);
        if (!config.output.quiet)
            std::fprintf(stderr,
                         "epmoe simulate: expert GEMM rate on this machine: %.2f GFLOP/s per rank, %d at once\n",
                         gflops, concurrent);
    }
    Platform platform = make_platform(sc, sc.ranks, gflops);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec || !fs::is_directory(dir)) fail(dir, ": cannot create the results directory (", ec.message(), ")");
    apply_set(json, "output.dir=" + dir);
    apply_set(json, cat("simulate.gflops_per_core=", gflops));
    write_text(fs::path(dir) / "platform.xml", platform.xml);
    std::string hostfile;
    for (const auto& h : platform.hosts) hostfile += h + "\n";
    write_text(fs::path(dir) / "hostfile", hostfile);
    write_text(fs::path(dir) / "simulate.json", json.dump(2) + "\n");
}

}  // namespace

double measure_gflops(const Config& config, int rows, int concurrent) {
    ModelShape shape = static_cast<const ModelShape&>(config.model);
    shape.num_layers = 1;
    shape.num_experts = 1;
    // One model, buffers and thread a rank: on a shared core (SMT, a VM's vCPUs) a rank's rate is what it
    // gets while the other ranks of its node run their experts too, as they do in a step.
    std::vector<double> rates(static_cast<size_t>(concurrent));
    std::latch ready(concurrent);
    auto one_rank = [&](int i) {
        set_compute_threads(config.threads_per_rank);  // as each rank of `epmoe run`; OpenMP's is per thread
        Model model = make_synthetic_model(
            shape, config.seed + static_cast<uint64_t>(i), [](int, int) { return true; },
            make_mlp_kernel(config.compute.backend, config.compute.dtype, false, config.compute.packs_weights(),
                            config.compute.weight_panel_kib));
        const ExpertWeights& w = model.layers[0].experts.at(0);
        std::vector<float> x(static_cast<size_t>(rows) * shape.d_model, 0.5f), y(x.size()), scratch;
        model.kernel->forward(w, shape.d_model, shape.d_ff, x, y, scratch);  // warm-up
        ready.arrive_and_wait();
        using Clock = std::chrono::steady_clock;
        const auto start = Clock::now();
        double seconds = 0;
        int calls = 0;
        for (; seconds < 0.5 || calls < 3; ++calls) {
            model.kernel->forward(w, shape.d_model, shape.d_ff, x, y, scratch);
            seconds = std::chrono::duration<double>(Clock::now() - start).count();
        }
        rates[static_cast<size_t>(i)] = shape.expert_flops_per_token() * rows * calls / seconds / 1e9;
    };
    {
        std::vector<std::jthread> threads;
        for (int i = 1; i < concurrent; ++i) threads.emplace_back(one_rank, i);
        one_rank(0);
    }
    return std::accumulate(rates.begin(), rates.end(), 0.0) / concurrent;
}

int simulate(const mpi::Comm& world, const Config& config) {
    mpi::all_or_none(world, [&] {
        if (sim::simulated())
            fail("epmoe simulate starts smpirun itself: run it from the ordinary build (build/epmoe)");
        if (world.size() != 1) fail("epmoe simulate runs as one process (it starts smpirun): run it without mpirun");
    });
    // Everything up to smpirun may fail on bad input: one agreed error line, exit 2 (main.cpp).
    std::string dir, binary;
    double gflops = 0;
    int ranks = 0;
    mpi::all_or_none(world, [&] { prepare(world, config, dir, binary, gflops, ranks); });
    const std::string speed = cat(gflops, "Gf");
    std::vector<std::string> argv = {
        config.simulate.smpirun, "-no-privatize", "-platform", dir + "/platform.xml", "-hostfile", dir + "/hostfile",
        "-np", std::to_string(ranks),
        "--cfg=smpi/host-speed:" + speed,  // host code (gate, top-k, pack) keeps its measured duration
        "--cfg=smpi/simulate-computation:yes", "--cfg=smpi/shared-malloc:global",
        // SMPI's default sends small messages detached, and each detached send scans a list as long as the
        // ranks: at 512 ranks that was half the simulator's time. Simulated step times moved under 1 %.
        "--cfg=smpi/send-is-detached-thresh:0",
        // Gathers in log(P) rounds of blocking messages. SMPI's default ones start a non-blocking collective
        // and wait for its 2P requests one by one (O(P^2) a rank, O(P^3) in all): the allgather of host
        // names alone kept a 1,024-rank run in its set-up for over 20 minutes. (The whole `ompi` selector
        // is no way out: its allgatherv broadcasts with bcast__NTSB, which aborts at 136 ranks.)
        "--cfg=smpi/allgather:bruck", "--cfg=smpi/allgatherv:ompi_bruck", "--cfg=smpi/gather:ompi_binomial",
        "--cfg=smpi/alltoall:bruck",  // the count exchange: log(P) rounds, as MPIs do at small sizes
        "--log=xbt_cfg.thres:warning", "--log=smpi_coll.thres:warning",
        "--log=smpi_kernel.thres:error",  // not a warning per rank when the ranks exit 2 on bad input
        binary, "run", "--config", dir + "/simulate.json"};
    std::string script = "#!/bin/sh\n# the command `epmoe simulate` ran\nOPENBLAS_NUM_THREADS=1 exec";
    for (const auto& a : argv) script.append(" ").append(shell_word(a));
    write_text(fs::path(dir) / "smpirun.sh", script + "\n");
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    return spawn_and_wait(argv);
}

}  // namespace epmoe
