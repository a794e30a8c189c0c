// `epmoe report`: checks the directories and the report folder, finds src/app/report.py and a python3 with
// matplotlib, and runs `python3 -B report.py --out OUT DIR...` (posix_spawn, as simulate.cpp starts smpirun).
#include "app/report.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <iostream>

#include "app/version.hpp"
#include "epmoe/base/error.hpp"

extern char** environ;

namespace po = boost::program_options;

namespace epmoe {
namespace {

namespace fs = std::filesystem;

const char* kReportHelp =
    "usage: epmoe report DIR... [--out DIR] [--overwrite]\n"
    "\n"
    "Draws figures (PNG, matplotlib) and a table across results directories. Each DIR is a run directory\n"
    "(summary.json: from epmoe run or epmoe simulate) or a compare directory (compare.csv: from epmoe compare).\n"
    "The report folder gets:\n"
    "  <run>-load.png      layer x expert load of the first and the last metrics line (dense layers marked)\n"
    "  <run>-steps.png     step time and tokens/s over steps (metrics.jsonl)\n"
    "  <run>-time.png      time breakdown: gate, dispatch, expert, combine, coordinator (summary.json)\n"
    "  <run>-energy.png    J/token over steps and its source: rapl or hwmon (measured), \"estimated: a model\",\n"
    "                      or \"not measured\"\n"
    "                      (these four per run directory; for a compare directory, per pair, of its first repeat)\n"
    "  <compare>-frontier.png  gain vs fidelity: changed assignment fraction and output rel. L2 (x) against\n"
    "                      rank max/mean and tokens/s (y), one point per pair with min-max bars over the\n"
    "                      repeats, the Pareto-optimal pairs marked\n"
    "  report.md, report.html (the same content, the PNGs embedded), report.csv: the figures and a table with one\n"
    "                      row per run directory (per pair for a compare directory): tokens/s, step p50/p99,\n"
    "                      rank and expert max/mean (last), drop rate, changed assignment fraction, output rel. L2,\n"
    "                      J/token and its source, ranks, model, policy, placement, kernel\n"
    "The report folder: --out, else report/ inside DIR when one DIR is given, else results/report-<UTC time>.\n"
    "An existing non-empty one is refused unless --overwrite.\n"
    "\n"
    "environment:\n"
    "  EPMOE_REPORT_SCRIPT  the script that draws it (default: src/app/report.py of epmoe's source tree)\n"
    "  EPMOE_PYTHON         the python3 that runs it (default: python3 on PATH, else /usr/bin/python3: the first\n"
    "                       that imports matplotlib; Debian package python3-matplotlib)\n"
    "Run it as one process, not under mpirun.\n";

// Runs argv (a PATH search for argv[0]), waits, returns its exit code: 127 when it cannot start, 128 + signal when
// killed. quiet sends its stdout and stderr to /dev/null.
int spawn_and_wait(const std::vector<std::string>& argv, bool quiet) {
    std::vector<char*> raw;
    for (const auto& a : argv) raw.push_back(const_cast<char*>(a.c_str()));
    raw.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (quiet) {
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_adddup2(&actions, 1, 2);
    }
    std::fflush(stdout);
    std::fflush(stderr);
    pid_t pid = 0;
    const int started = posix_spawnp(&pid, raw[0], &actions, nullptr, raw.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (started != 0) return 127;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The first python3 that imports matplotlib: $EPMOE_PYTHON alone when set, else python3 on PATH, then Debian's
// /usr/bin/python3 (a python3 earlier on PATH, e.g. pyenv's, does not see Debian's packages).
std::string find_python() {
    std::vector<std::string> candidates = {"python3", "/usr/bin/python3"};
    const char* env = std::getenv("EPMOE_PYTHON");
    if (env && *env) candidates = {env};
    std::string tried;
    for (const auto& python : candidates) {
        if (spawn_and_wait({python, "-c", "import matplotlib"}, true) == 0) return python;
        tried += (tried.empty() ? "" : ", ") + python;
    }
    fail("epmoe report draws its figures with matplotlib, which ", tried,
         " cannot import: install Debian's python3-matplotlib (apt-get install python3-matplotlib)",
         env && *env ? ", or point EPMOE_PYTHON at a python3 that has it" : "");
}

// results/report-<UTC time>, made unique with a -N suffix.
std::string timestamped_out() {
    std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm utc{};
    gmtime_r(&now, &utc);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &utc);
    const std::string base = cat("results/report-", stamp);
    std::string out = base;
    for (int i = 2; fs::exists(out); ++i) out = cat(base, "-", i);
    return out;
}

void check_dir(const std::string& dir) {
    std::error_code ec;
    if (!fs::exists(dir, ec)) fail("epmoe report: ", dir, ": no such directory");
    if (!fs::is_directory(dir, ec)) fail("epmoe report: ", dir, ": not a directory");
    if (!fs::is_regular_file(fs::path(dir) / "summary.json", ec) &&
        !fs::is_regular_file(fs::path(dir) / "compare.csv", ec))
        fail("epmoe report: ", dir, ": not a results directory (no summary.json or compare.csv; a run that failed ",
             "or was killed leaves no summary.json)");
}

// Creates the report folder. One that holds files is refused unless overwrite, which removes an earlier
// report's files there (report.md, report.html, report.csv, *.png) and nothing else.
void prepare_out(const std::string& out, bool overwrite) {
    std::error_code ec;
    if (fs::exists(out, ec) && !fs::is_directory(out, ec)) fail("epmoe report: --out ", out, ": not a directory");
    if (fs::is_directory(out, ec) && !fs::is_empty(out, ec)) {
        if (!overwrite)
            fail("epmoe report: ", out, " is not empty: choose another --out, or pass --overwrite to replace the ",
                 "report there");
        for (const auto& entry : fs::directory_iterator(out, ec)) {
            const std::string name = entry.path().filename().string();
            const bool ours = name == "report.md" || name == "report.html" || name == "report.csv" ||
                              entry.path().extension() == ".png";
            if (ours && entry.is_regular_file(ec)) fs::remove(entry.path(), ec);
        }
    }
    fs::create_directories(out, ec);
    if (!fs::is_directory(out)) fail("epmoe report: ", out, ": cannot create the report folder (", ec.message(), ")");
}

po::variables_map parse(const std::vector<std::string>& args, po::options_description& desc) {
    desc.add_options()("help,h", "this help")("out", po::value<std::string>(),
                                              "the report folder (default: see above)")(
        "overwrite", "replace the report in a non-empty --out folder");
    po::options_description all;
    all.add(desc).add_options()("dirs", po::value<std::vector<std::string>>());
    po::positional_options_description positional;
    positional.add("dirs", -1);
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        fail("epmoe report: ", e.what(), " (see epmoe report --help)");
    }
    return vm;
}

}  // namespace

std::string report_script() {
    const char* env = std::getenv("EPMOE_REPORT_SCRIPT");
    if (env && *env) {
        if (!fs::is_regular_file(env)) fail("EPMOE_REPORT_SCRIPT=", env, ": no such file");
        return env;
    }
    std::vector<fs::path> candidates;
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) candidates.push_back(self.parent_path().parent_path() / "src" / "app" / "report.py");
    candidates.push_back(fs::path(source_dir()) / "src" / "app" / "report.py");
    std::string tried;
    for (const auto& path : candidates) {
        if (fs::is_regular_file(path, ec)) return path.string();
        tried += (tried.empty() ? "" : ", ") + path.string();
    }
    fail("epmoe report: its script is not at ", tried, " (set EPMOE_REPORT_SCRIPT to src/app/report.py)");
}

int report_command(const mpi::Comm& world, const std::vector<std::string>& args) {
    po::options_description desc("options");
    po::variables_map vm;
    std::vector<std::string> argv;
    mpi::all_or_none(world, [&] {
        vm = parse(args, desc);
        if (vm.count("help")) return;
        if (world.size() != 1) fail("epmoe report runs as one process: run it without mpirun");
        if (!vm.count("dirs")) fail("epmoe report: give one or more results directories (see epmoe report --help)");
        const auto dirs = vm["dirs"].as<std::vector<std::string>>();
        for (const auto& dir : dirs) check_dir(dir);
        std::string out = vm.count("out") ? vm["out"].as<std::string>() : "";
        if (out.empty()) out = dirs.size() == 1 ? (fs::path(dirs[0]) / "report").string() : timestamped_out();
        const std::string script = report_script();
        argv = {find_python(), "-B", script, "--out", out};  // -B: no __pycache__ in the source tree
        argv.insert(argv.end(), dirs.begin(), dirs.end());
        prepare_out(out, vm.count("overwrite") > 0);
    });
    if (vm.count("help")) {
        if (world.rank() == 0) std::cout << kReportHelp << "\n" << desc;
        return 0;
    }
    return spawn_and_wait(argv, false);
}

}  // namespace epmoe
