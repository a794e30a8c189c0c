#include "app/cli.hpp"

#include <boost/program_options.hpp>
#include <iostream>
#include <sstream>

#include "app/compare.hpp"
#include "epmoe/base/error.hpp"
#include "app/info.hpp"
#include "app/inspect.hpp"
#include "app/run.hpp"
#include "app/simulate.hpp"

namespace po = boost::program_options;

namespace epmoe::cli {
namespace {

const char* kUsage =
    "usage: epmoe <command> [options]\n"
    "\n"
    "Expert-parallel Mixture-of-Experts runtime for CPU clusters (MPI + OpenBLAS).\n"
    "\n"
    "commands:\n"
    "  run     run the MoE forward pass over all ranks and write a results directory\n"
    "  compare run policy/placement pairs on one model and workload; writes compare.csv and compare.md\n"
    "  simulate run on N simulated ranks of a simulated cluster (SimGrid SMPI); writes the same results\n"
    "  info    show ranks, hosts, hwloc topology, MPI, BLAS and energy sources\n"
    "  inspect describe a Hugging Face MoE checkpoint and its weight bytes per rank\n"
    "\n"
    "options:\n"
    "  -h [ --help ]     this help; `epmoe <command> --help` lists a command's options\n"
    "  --version         print the version\n"
    "\n"
    "Launch with mpirun (e.g. `mpirun -np 4 build/epmoe run`), srun, or as one process.\n";

// Flags of `run` that are shorthands for a config key.
struct Shorthand {
    const char* flag;
    const char* key;
    const char* help;
};
const Shorthand kRunShorthands[] = {
    {"model", "model.path", "Hugging Face checkpoint directory or .safetensors file (default: synthetic)"},
    {"layers", "model.layers", "MoE layers A-B of a checkpoint to run (default: all)"},
    {"input", "workload.input", "safetensors file with hidden_states [T, d_model], or [S, T, d_model] for S steps (default: synthetic)"},
    {"dump-output", "output.dump", "write hidden_states, topk_ids.<l>, topk_weights.<l> to this .safetensors"},
    {"steps", "workload.steps", "steps to run"},
    {"tokens-per-rank", "workload.tokens_per_rank", "synthetic tokens per rank per step"},
    {"policy", "policy.name",
     "routing policy: none | aux_free | prev_batch | energy | round_robin | random | balanced | temperature"},
    {"placement", "placement.name",
     "expert placement: contiguous | round_robin | balanced | replicated (the last two need placement.profile)"},
    {"capacity-factor", "routing.capacity_factor", "expert capacity factor X > 0; 0 = dropless"},
    {"energy-source", "energy.source", "auto | rapl | hwmon | estimated | none"},
    {"out", "output.dir", "results directory (default: results/<UTC timestamp>-<policy>)"},
    {"seed", "seed", "seed of the synthetic model and workload"},
};

std::string describe(const po::options_description& desc, const char* head) {
    std::ostringstream os;
    os << head << "\n" << desc;
    return os.str();
}

po::variables_map parse_or_fail(const std::vector<std::string>& args, const po::options_description& desc,
                                const char* command) {
    po::variables_map vm;
    po::options_description all;
    all.add(desc).add_options()("positional-arguments", po::value<std::vector<std::string>>());
    po::positional_options_description positional;
    positional.add("positional-arguments", -1);
    try {
        po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        fail("epmoe ", command, ": ", e.what(), " (see epmoe ", command, " --help)");
    }
    if (vm.count("positional-arguments"))  // no command takes bare words
        fail("epmoe ", command, ": unexpected argument '", vm["positional-arguments"].as<std::vector<std::string>>()[0],
             "' (see epmoe ", command, " --help)");
    return vm;
}

int run_command(const mpi::Comm& world, const std::vector<std::string>& args) {
    std::string help;
    std::optional<Config> config;
    mpi::all_or_none(world, [&] { config = parse_run(args, help); });
    if (!config) {
        if (world.rank() == 0) std::cout << help;
        return 0;
    }
    return run(world, *config);
}

int info_command(const mpi::Comm& world, const std::vector<std::string>& args) {
    po::options_description desc("options");
    desc.add_options()("help,h", "this help")("json", "print one JSON object instead of text")(
        "config", po::value<std::string>(), "config file (energy.sysfs_root is read from it)")(
        "set", po::value<std::vector<std::string>>()->composing(), "override a config key: a.b=value")(
        "bind", "bind ranks to cores first, as `epmoe run --bind` does (resources.bind=core)");
    po::variables_map vm;
    Json merged = default_config();
    mpi::all_or_none(world, [&] {
        vm = parse_or_fail(args, desc, "info");
        if (vm.count("config")) merge_config(merged, read_config_file(vm["config"].as<std::string>()),
                                             vm["config"].as<std::string>());
        if (vm.count("bind")) apply_set(merged, "resources.bind=core");
        if (vm.count("set"))
            for (const auto& s : vm["set"].as<std::vector<std::string>>()) apply_set(merged, s);
        Config::from_json(merged);
    });
    if (vm.count("help")) {
        if (world.rank() == 0) std::cout << describe(desc, "usage: epmoe info [--json] [--bind] [--config F] [--set k=v]\n");
        return 0;
    }
    return info(world, Config::from_json(merged), vm.count("json") > 0);
}

}  // namespace

std::optional<Config> parse_run(const std::vector<std::string>& args, std::string& help, const Json& defaults) {
    po::options_description desc("options");
    desc.add_options()("help,h", "this help")("config", po::value<std::string>(), "config file (JSON), any keys")(
        "set", po::value<std::vector<std::string>>()->composing(),
        "override one config key: a.b=value (repeatable; applied last)")("quiet,q", "no progress lines")(
        "bind", "bind each rank and its BLAS threads to resources.threads_per_rank cores (resources.bind=core)");
    for (const auto& s : kRunShorthands) desc.add_options()(s.flag, po::value<std::string>(), s.help);
    po::variables_map vm = parse_or_fail(args, desc, "run");
    if (vm.count("help")) {
        std::ostringstream os;
        os << describe(desc, "usage: epmoe run [options]\n\nRuns the MoE stack over all ranks. With no options: the "
                             "embedded default model and workload.\nConfig order: defaults, --config, flags, --set.\n");
        os << "\nconfig keys and defaults:\n" << defaults.dump(2) << "\n";
        help = os.str();
        return std::nullopt;
    }
    Json merged = defaults;
    if (vm.count("config")) {
        std::string path = vm["config"].as<std::string>();
        merge_config(merged, read_config_file(path), path);
    }
    for (const auto& s : kRunShorthands)
        if (vm.count(s.flag)) apply_set(merged, std::string(s.key) + "=" + vm[s.flag].as<std::string>());
    if (vm.count("quiet")) apply_set(merged, "output.quiet=true");
    if (vm.count("bind")) apply_set(merged, "resources.bind=core");
    if (vm.count("set"))
        for (const auto& s : vm["set"].as<std::vector<std::string>>()) apply_set(merged, s);
    return Config::from_json(merged);
}

int dispatch(const mpi::Comm& world, int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
        if (world.rank() == 0) std::cout << kUsage;
        return args.empty() ? 2 : 0;
    }
    if (args[0] == "--version") {
        if (world.rank() == 0) std::cout << "epmoe " << EPMOE_VERSION << "\n";
        return 0;
    }
    std::string command = args[0];
    args.erase(args.begin());
    if (command == "run") return run_command(world, args);
    if (command == "compare") return compare_command(world, args);
    if (command == "simulate") return simulate_command(world, args);
    if (command == "info") return info_command(world, args);
    if (command == "inspect") return inspect_command(world, args);
    fail("unknown command '", command, "' (commands: run, compare, info, inspect, simulate; see epmoe --help)");
}

}  // namespace epmoe::cli
