// The command line: `epmoe <command> [options]`, parsed here (Boost.Program_options) into a Config, then handed
// to the command. Commands never parse arguments of another command.
#include "app/cli.hpp"

#include <boost/program_options.hpp>
#include <iostream>
#include <sstream>

#include "app/cli_job.hpp"
#include "app/compare.hpp"
#include "app/eval.hpp"
#include "app/generate.hpp"
#include "app/info.hpp"
#include "app/inspect.hpp"
#include "app/report.hpp"
#include "app/run.hpp"
#include "app/simulate.hpp"
#include "app/tokenize.hpp"
#include "app/version.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/control/policy.hpp"
#include "epmoe/moe/placement.hpp"

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
    "  eval    perplexity of a whole model over token ids (eval.json)\n"
    "  train   train a whole model (from scratch or a checkpoint): AdamW, experts sharded over the ranks\n"
    "  generate continue prompts with a whole model: greedy or sampled, KV cache (generated.safetensors)\n"
    "  tokenize token ids of a text file through the checkpoint's own tokenizer (.safetensors or .bin)\n"
    "  compare run policy/placement pairs on one model and workload; writes compare.csv and compare.md\n"
    "  simulate run on N simulated ranks of a simulated cluster (SimGrid SMPI); writes the same results\n"
    "  info    show ranks, hosts, hwloc topology, MPI, BLAS and energy sources\n"
    "  inspect describe a Hugging Face MoE checkpoint and its weight bytes per rank\n"
    "  report  figures (PNG) and a table across results directories: report.md, report.html, report.csv\n"
    "\n"
    "options:\n"
    "  -h [ --help ]     this help; `epmoe <command> --help` lists a command's options\n"
    "  --version         print the version\n"
    "\n"
    "Launch with launchers/mpirun.sh (e.g. `launchers/mpirun.sh -n 4 build/epmoe run`: it adds\n"
    "--allow-run-as-root and --oversubscribe where Open MPI needs them), srun, or as one process.\n";

// Quotes a word for a shell command line when it needs quoting.
std::string shell_word(const std::string& w) {
    if (!w.empty() && w.find_first_of(" '\"$\\;&|<>()*?`") == std::string::npos) return w;
    std::string out = "'";
    for (char c : w) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

}  // namespace


std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : " | ") + n;
    return out;
}

// The flags of `run` (and of compare and simulate, which run it); names from the registries.
std::vector<Shorthand> run_shorthands() {
    return {
        {"model", "model.path", "Hugging Face checkpoint directory or .safetensors file (default: synthetic)"},
        {"layers", "model.layers", "layers A-B of a checkpoint to run, 0-based, dense ones included (default: all)"},
        {"input", "workload.input",
         "safetensors file with hidden_states [T, d_model], or [S, T, d_model] for S steps (default: synthetic)"},
        {"dump-output", "output.dump", "write hidden_states, topk_ids.<l>, topk_weights.<l> to this .safetensors"},
        {"steps", "workload.steps", "steps to run"},
        {"tokens-per-rank", "workload.tokens_per_rank", "synthetic tokens per rank per step"},
        {"policy", "policy.name", "routing policy: " + joined(policy_names())},
        {"placement", "placement.name",
         "expert placement: " + joined(placement_names()) + " (balanced and replicated need placement.profile)"},
        {"capacity-factor", "routing.capacity_factor", "expert capacity factor X > 0; 0 = dropless"},
        {"energy-source", "energy.source", "auto | rapl | hwmon | estimated | none"},
        {"out", "output.dir", "results directory (default: results/<UTC timestamp>-<policy>)"},
        {"seed", "seed", "seed of the synthetic model and workload"},
    };
}

// The flags of the whole-model commands: run's model, routing and output flags, and the tokens.
std::vector<Shorthand> text_shorthands(bool generate) {
    std::vector<Shorthand> out;
    for (const Shorthand& s : run_shorthands())
        if (s.flag != "input" && s.flag != "dump-output" && s.flag != "steps" && s.flag != "tokens-per-rank" &&
            s.flag != "layers")
            out.push_back(s);
    out.push_back({"tokens", "text.tokens",
                   "token ids: safetensors input_ids (I32/I64, [N] or [B, S]) or a .bin of little-endian ids "
                   "(default: synthetic [text.synthetic_sequences, text.synthetic_length])"});
    out.push_back({"token-dtype", "text.token_dtype", "a .bin file's id width: auto | uint16 | uint32"});
    out.push_back({"text", "text.text",
                   generate ? "prompts as text: one per line, or a .jsonl of {\"prompt\": ...} (the model's tokenizer)"
                            : "a UTF-8 text file, tokenized whole by the model's tokenizer (one stream)"});
    out.push_back({"tokenizer", "text.tokenizer",
                   "auto | json | sp (the --model directory's tokenizer.json / tokenizer.model) | PATH"});
    if (!generate) {
        out.push_back({"ctx", "text.ctx", "tokens a window reads"});
        out.push_back({"stride", "text.stride", "tokens a window advances; 0 = ctx (disjoint windows)"});
        out.push_back({"batch", "text.batch", "windows a rank runs in one step"});
        out.push_back({"dump-logits", "text.dump_logits", "write logits [B, S, V] F32 of a [B, S] input here"});
        return out;
    }
    out.push_back({"batch", "text.batch", "prompts a rank decodes together"});
    out.push_back({"max-new-tokens", "generate.max_new_tokens", "tokens generated after each prompt"});
    out.push_back({"temperature", "generate.temperature", "0 = greedy (argmax); > 0 samples"});
    out.push_back({"top-p", "generate.top_p", "nucleus sampling's probability mass (with --temperature > 0)"});
    return out;
}

// The flags `simulate` adds, each a shorthand for a simulate.* key.
std::vector<Shorthand> simulate_shorthands() {
    return {
        {"ranks", "simulate.ranks", "simulated MPI ranks (16)"},
        {"platform", "simulate.platform", "fat-tree | torus | dragonfly | FILE.xml (fat-tree)"},
        {"bandwidth", "simulate.bandwidth", "bandwidth of every network link, SimGrid units (100Gbps)"},
        {"latency", "simulate.latency", "latency of every network link (1us)"},
        {"ranks-per-node", "simulate.ranks_per_node", "ranks (cores) per simulated node (4)"},
        {"gflops-per-core", "simulate.gflops_per_core", "expert GEMM rate, GFLOP/s per rank; 0 = measure now (0)"},
    };
}

// simulate's default workload.steps: each simulated step costs the host compute of every rank (gate, top-k,
// pack, synthetic tokens) on one core, about 12 s at 256 ranks, so 40 would take minutes.
constexpr int kSimulateSteps = 3;

std::string describe(const po::options_description& desc, const std::string& head) {
    std::ostringstream os;
    os << head << "\n" << desc;
    return os.str();
}

// A flag whose value was forgotten takes the next flag as its value (`--seed --out X`): name it instead.
void check_values(const po::variables_map& vm, const po::options_description& desc, const char* command) {
    for (const auto& [name, value] : vm) {
        const auto* text = boost::any_cast<std::string>(&value.value());
        if (!text || text->rfind("--", 0) != 0) continue;
        const std::string next = text->substr(2, text->find('=') - 2);
        if (desc.find_nothrow(next, false))
            fail("epmoe ", command, ": --", name, " needs a value, but the next word is the flag ", *text,
                 " (see epmoe ", command, " --help)");
    }
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
    check_values(vm, desc, command);
    if (vm.count("positional-arguments"))  // no command takes bare words
        fail("epmoe ", command, ": unexpected argument '", vm["positional-arguments"].as<std::vector<std::string>>()[0],
             "' (see epmoe ", command, " --help)");
    return vm;
}

// The options every command that runs the job takes: --config, --set, the shorthands and a few switches.
po::options_description job_options(const std::vector<Shorthand>& shorthands) {
    po::options_description desc("options");
    desc.add_options()("help,h", "this help")("config", po::value<std::string>(), "config file (JSON), any keys")(
        "set", po::value<std::vector<std::string>>()->composing(),
        "override one config key: a.b=value (repeatable; applied last)")("quiet,q", "no progress lines")(
        "overwrite", "replace the results of an earlier run in the results directory (output.overwrite=true)")(
        "bind", "bind each rank and its BLAS threads to resources.threads_per_rank cores (resources.bind=core)");
    for (const auto& s : shorthands) desc.add_options()(s.flag.c_str(), po::value<std::string>(), s.help.c_str());
    return desc;
}

// defaults <- --config <- shorthands and switches <- each --set; the policy and placement names checked against
// their registries.
Config merge_job_config(const po::variables_map& vm, const std::vector<Shorthand>& shorthands, Json merged,
                        const std::string& command_line) {
    if (vm.count("config")) {
        const std::string path = vm["config"].as<std::string>();
        merge_config(merged, read_config_file(path), path);
    }
    for (const auto& s : shorthands)
        if (vm.count(s.flag)) apply_set(merged, s.key + "=" + vm[s.flag].as<std::string>());
    if (vm.count("quiet")) apply_set(merged, "output.quiet=true");
    if (vm.count("overwrite")) apply_set(merged, "output.overwrite=true");
    if (vm.count("bind")) apply_set(merged, "resources.bind=core");
    if (vm.count("set"))
        for (const auto& s : vm["set"].as<std::vector<std::string>>()) apply_set(merged, s);
    Config config = Config::from_json(merged);
    config.command_line = command_line;
    check_policy_name(config.policy.name);
    check_placement_name(config.placement.name);
    return config;
}

// Parses a job command's arguments (no MPI): the Config, or nullopt with `help` set (head, the options and the
// config keys with their defaults) for --help.
std::optional<Config> parse_job_args(const std::vector<std::string>& args, const char* command,
                                     const std::vector<Shorthand>& shorthands, const Json& defaults,
                                     const std::string& head, std::string& help,
                                     const po::options_description& extra = po::options_description(),
                                     const std::string& command_line = "", po::variables_map* values = nullptr) {
    po::options_description desc = job_options(shorthands);
    desc.add(extra);
    po::variables_map vm = parse_or_fail(args, desc, command);
    if (values) *values = vm;
    if (!vm.count("help")) return merge_job_config(vm, shorthands, defaults, command_line);
    help = describe(desc, head) + "\nconfig keys and defaults:\n" + defaults.dump(2) + "\n";
    return std::nullopt;
}

// parse_job_args on every rank (an error on any is one agreed error); rank 0 prints the help.
std::optional<Config> parse_job(const mpi::Comm& world, const std::vector<std::string>& args, const char* command,
                                const std::vector<Shorthand>& shorthands, const Json& defaults, const std::string& head,
                                const std::string& command_line, const po::options_description& extra,
                                po::variables_map* values) {
    std::optional<Config> config;
    std::string help;
    mpi::all_or_none(world, [&] {
        config = parse_job_args(args, command, shorthands, defaults, head, help, extra, command_line, values);
    });
    if (!config && world.rank() == 0) std::cout << help;
    return config;
}

int run_command(const mpi::Comm& world, const std::vector<std::string>& args, const std::string& command_line) {
    std::optional<Config> config =
        parse_job(world, args, "run", run_shorthands(), default_config(),
                  "usage: epmoe run [options]\n\nRuns the MoE stack over all ranks. With no options: the embedded "
                  "default model and workload.\nConfig order: defaults, --config, flags, --set.\n",
                  command_line);
    return config ? run(world, *config) : 0;
}

int eval_command(const mpi::Comm& world, const std::vector<std::string>& args, const std::string& command_line) {
    std::optional<Config> config = parse_job(
        world, args, "eval", text_shorthands(false), default_config(),
        "usage: epmoe eval [--model DIR] [--tokens FILE] [--ctx N] [--stride S] [options]\n\n"
        "Perplexity of the whole model (embeddings, attention, the expert-parallel MoE blocks, LM head) over\n"
        "windows of --ctx tokens advancing by --stride, as the Hugging Face perplexity guide runs them; the\n"
        "windows are spread over the ranks. Writes eval.json beside the run's results.\n",
        command_line);
    return config ? eval(world, *config) : 0;
}

int generate_command(const mpi::Comm& world, const std::vector<std::string>& args,
                     const std::string& command_line) {
    std::optional<Config> config = parse_job(
        world, args, "generate", text_shorthands(true), default_config(),
        "usage: epmoe generate [--model DIR] [--tokens PROMPTS] [--max-new-tokens N] [options]\n\n"
        "Continues each prompt (a row of a [B, S] input, or a whole [N] stream) with a KV cache, prompts spread\n"
        "over the ranks; writes generated.safetensors (generated_ids I32 [B, N]) and generated.jsonl.\n",
        command_line);
    return config ? generate(world, *config) : 0;
}

namespace {

int compare_command(const mpi::Comm& world, const std::vector<std::string>& args, const std::string& command_line) {
    po::options_description extra;
    extra.add_options()("pairs", po::value<std::string>()->default_value(kDefaultComparePairs),
                        "POLICY/PLACEMENT,... to run (none/contiguous is added first as the baseline)")(
        "warmup", po::value<int>()->default_value(CompareOptions{}.warmup),
        "steps each run makes first, left out of every figure")(
        "repeats", po::value<int>()->default_value(CompareOptions{}.repeats),
        "runs of each pair, interleaved (ABC ABC); figures are medians with min-max")(
        "mode", po::value<std::string>()->default_value("run"),
        "run: the MoE stack (epmoe run); eval: the whole model's perplexity (epmoe eval; ppl and delta_ppl columns)");
    // A pair sets the policy and the placement: --policy, --placement and their keys would be silently replaced.
    std::vector<Shorthand> shorthands;
    for (const Shorthand& s : run_shorthands())
        if (s.flag != "policy" && s.flag != "placement") shorthands.push_back(s);
    for (const Shorthand& s : text_shorthands(false))  // --mode eval's tokens and windows
        if (s.key.rfind("text.", 0) == 0 && s.flag != "dump-logits") shorthands.push_back(s);
    po::variables_map values;
    std::optional<Config> config = parse_job(
        world, args, "compare", shorthands, default_config(),
        "usage: epmoe compare [--mode run|eval] [--pairs POLICY/PLACEMENT,...] [--warmup N] [--repeats R]\n"
        "                     [every epmoe run (or eval) option but --policy and --placement]\n\nRuns each pair on "
        "the same model, workload and seed and writes compare.csv and compare.md.\n",
        command_line, extra, &values);
    if (!config) return 0;
    std::vector<ComparePair> pairs;
    mpi::all_or_none(world, [&] {
        const Json& d = default_config();
        if (config->policy.name != d["policy"]["name"] || config->placement.name != d["placement"]["name"])
            fail("epmoe compare: the pairs set the policy and the placement (policy.name and placement.name are "
                 "not used): give them as --pairs POLICY/PLACEMENT,...");
        pairs = parse_pairs(values["pairs"].as<std::string>());
        const std::string mode = values["mode"].as<std::string>();
        if (mode != "run" && mode != "eval") fail("epmoe compare: --mode ", mode, ": expected run or eval");
        if (mode == "run" && (*config->json)["text"] != d["text"])
            fail("epmoe compare: text.* keys (--tokens, --ctx, ...) are for --mode eval");
    });
    return compare(world, *config, pairs,
                   {values["warmup"].as<int>(), values["repeats"].as<int>(), values["mode"].as<std::string>() == "eval"});
}

int simulate_command(const mpi::Comm& world, const std::vector<std::string>& args, const std::string& command_line) {
    std::vector<Shorthand> shorthands = run_shorthands();
    for (auto& s : simulate_shorthands()) shorthands.push_back(s);
    Json defaults = default_config();
    defaults["workload"]["steps"] = kSimulateSteps;
    std::optional<Config> config = parse_job(
        world, args, "simulate", shorthands, defaults,
        "usage: epmoe simulate [--ranks N] [--platform fat-tree|torus|dragonfly|FILE.xml] [--bandwidth B]\n"
        "                      [--latency L] [--ranks-per-node K] [--gflops-per-core G] [every run option]\n\n"
        "Runs `epmoe run` on N simulated ranks under SimGrid's SMPI (build-smpi/epmoe) and writes the same\n"
        "results directory, with \"simulated\": true and the platform in summary.json; every time in it is\n"
        "simulated seconds. Run it as one process, not under mpirun.\n",
        command_line);
    return config ? simulate(world, *config) : 0;
}

int info_command(const mpi::Comm& world, const std::vector<std::string>& args) {
    po::options_description desc("options");
    desc.add_options()("help,h", "this help")("json", "print one JSON object instead of text")(
        "config", po::value<std::string>(), "config file (energy.sysfs_root is read from it)")(
        "set", po::value<std::vector<std::string>>()->composing(), "override a config key: a.b=value")(
        "bind", "bind ranks to cores first, as `epmoe run --bind` does (resources.bind=core)");
    po::variables_map vm;
    std::optional<Config> config;
    mpi::all_or_none(world, [&] {
        vm = parse_or_fail(args, desc, "info");
        if (!vm.count("help")) config = merge_job_config(vm, {}, default_config(), "");
    });
    if (!config) {
        if (world.rank() == 0)
            std::cout << describe(desc, "usage: epmoe info [--json] [--bind] [--config F] [--set k=v]\n");
        return 0;
    }
    return info(world, *config, vm.count("json") > 0);
}

}  // namespace

std::optional<Config> parse_run(const std::vector<std::string>& args, std::string& help) {
    return parse_job_args(args, "run", run_shorthands(), default_config(), "usage: epmoe run [options]\n", help);
}

int dispatch(const mpi::Comm& world, int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    std::string command_line;  // as typed, for summary.json
    for (int i = 0; i < argc; ++i) {
        if (i > 0) command_line.push_back(' ');
        command_line.append(shell_word(argv[i]));
    }
    if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
        if (world.rank() == 0) std::cout << kUsage;
        return args.empty() ? 2 : 0;
    }
    if (args[0] == "--version") {
        if (world.rank() == 0) std::cout << "epmoe " << version() << " (" << git_describe() << ")\n";
        return 0;
    }
    std::string command = args[0];
    args.erase(args.begin());
    if (command == "run") return run_command(world, args, command_line);
    if (command == "eval") return eval_command(world, args, command_line);
    if (command == "generate") return generate_command(world, args, command_line);
    if (command == "tokenize") return tokenize_command(world, args);
    if (command == "train") return train_command(world, args, command_line);
    if (command == "compare") return compare_command(world, args, command_line);
    if (command == "simulate") return simulate_command(world, args, command_line);
    if (command == "info") return info_command(world, args);
    if (command == "inspect") return inspect_command(world, args);
    if (command == "report") return report_command(world, args);
    mpi::all_or_none(world, [&] {  // every rank sees the same argv: one error line, no abort
        fail("unknown command '", command,
             "' (commands: run, eval, generate, train, tokenize, compare, simulate, report, info, inspect; see epmoe --help)");
    });
    return 2;
}

}  // namespace epmoe::cli
