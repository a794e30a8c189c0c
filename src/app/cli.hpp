// The command line: `epmoe <command> [options]`, parsed with Boost.Program_options.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "epmoe/base/config.hpp"
#include "epmoe/base/json.hpp"
#include "epmoe/comm/mpi.hpp"

namespace epmoe::cli {

// The effective config of `epmoe run` from its arguments (those after "run"), or nullopt with `help` filled
// when --help was asked. Order: defaults, --config FILE, named flags, then each --set. No MPI.
std::optional<Config> parse_run(const std::vector<std::string>& args, std::string& help);

// Runs the command named in argv on every rank of world; returns the process exit code.
int dispatch(const mpi::Comm& world, int argc, char** argv);

}  // namespace epmoe::cli
