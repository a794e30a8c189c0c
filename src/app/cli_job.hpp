// What the command parsers of src/app/cli*.cpp share: the flags that stand for config keys and the parse of a
// job command's arguments into a Config. Private to app/.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "epmoe/base/config.hpp"
#include "epmoe/base/json.hpp"
#include "epmoe/comm/mpi.hpp"

namespace epmoe::cli {

// A flag that is a shorthand for one config key.
struct Shorthand {
    std::string flag, key, help;
};

// The flags of `run` (and of compare and simulate, which run it); names from the registries.
std::vector<Shorthand> run_shorthands();

// Parses a job command's arguments on every rank (an error on any is one agreed error): defaults <- --config <-
// the shorthands and switches <- each --set, plus `extra` options (their values in *values). Returns nullopt
// after rank 0 printed the help for --help.
std::optional<Config> parse_job(const mpi::Comm& world, const std::vector<std::string>& args, const char* command,
                                const std::vector<Shorthand>& shorthands, const Json& defaults, const std::string& head,
                                const std::string& command_line,
                                const boost::program_options::options_description& extra = {},
                                boost::program_options::variables_map* values = nullptr);

// `epmoe train ARGS` (cli_train.cpp).
int train_command(const mpi::Comm& world, const std::vector<std::string>& args, const std::string& command_line);

}  // namespace epmoe::cli
