// `epmoe simulate`: runs epmoe's own MPI code at cluster scale under SimGrid's SMPI. The ordinary build
// writes the platform and hostfile into the results directory and starts smpirun on the SMPI build
// (build-smpi/epmoe, see sim.hpp), whose simulated ranks write the same results directory as `run`.
#pragma once

#include <string>
#include <vector>

#include "epmoe/base/config.hpp"
#include "epmoe/comm/mpi.hpp"

namespace epmoe {

// A simulated cluster: SimGrid platform XML and the host of every rank.
struct Platform {
    std::string xml;                 // the platform file's text
    std::vector<std::string> hosts;  // [num_ranks] host of each rank, in rank order (the hostfile)
    Json describe;                   // summary.json's "platform"
};

// The platform of s for num_ranks ranks whose hosts compute at gflops GFLOP/s per core. Generated for
// fat-tree, torus and dragonfly (s.ranks_per_node cores a node, s.bandwidth/s.latency on every link);
// read from s.platform when it is a FILE.xml (its <host> ids and <cluster> hosts, in file order).
// Fails naming the file or key.
Platform make_platform(const SimulateConfig& s, int num_ranks, double gflops);

// summary.json's "platform" as the simulated ranks see it: the simulate.* keys and the node count.
Json describe_platform(const SimulateConfig& s, int num_ranks);

// Labels a metrics.jsonl line or summary.json of simulated ranks (sim::simulated()): "simulated": true, and
// for the summary the platform and what its times mean. Returns j unchanged in the ordinary build.
Json label_simulated(Json j, const Config& config, int num_ranks, bool summary);

// The expert kernel's rate on this machine, GFLOP/s per rank: the real MlpKernel of compute.* run on
// random weights of the model's shape for rows tokens, about 0.5 s, by `concurrent` ranks at once (threads,
// each with its own weights and compute.threads_per_rank BLAS threads); the mean of their rates.
// For simulate.gflops_per_core = 0.
double measure_gflops(const Config& config, int rows, int concurrent);

// `epmoe simulate [--ranks N] [--platform P] ... [every run option]`; returns the exit code.
int simulate_command(const mpi::Comm& world, const std::vector<std::string>& args);

}  // namespace epmoe
