// `epmoe simulate`: runs epmoe's own MPI code at cluster scale under SimGrid's SMPI. The ordinary build
// writes the platform and hostfile into the results directory and starts smpirun on the SMPI build
// (build-smpi/epmoe, see sim.hpp), whose simulated ranks write the same results directory as `run`.
#pragma once

#include <string>
#include <vector>

#include "app/platform.hpp"
#include "epmoe/base/config.hpp"
#include "epmoe/comm/mpi.hpp"

namespace epmoe {

// The expert kernel's rate on this machine, GFLOP/s per rank: the real MlpKernel of compute.* run on
// random weights of the model's shape for rows tokens, about 0.5 s, by `concurrent` ranks at once (threads,
// each with its own weights and compute.threads_per_rank BLAS threads); the mean of their rates.
// For simulate.gflops_per_core = 0.
double measure_gflops(const Config& config, int rows, int concurrent);

// `epmoe simulate` on the parsed config (cli.cpp turns --ranks N and friends into simulate.* keys): writes the
// platform, hostfile and simulate.json into the results directory and runs smpirun on the SMPI build.
// Runs as one process. Returns the exit code (smpirun's).
int simulate(const mpi::Comm& world, const Config& config);

}  // namespace epmoe
