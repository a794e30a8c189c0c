// `epmoe compare`: policy/placement pairs on one model, workload and seed, as a measurement: warm-up steps left
// out, each pair repeated in an interleaved order, medians with min and max, and ratios to the baseline only
// where the ranges do not overlap.
#include "app/compare.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "app/eval.hpp"
#include "app/run.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/control/policy.hpp"
#include "epmoe/io/results.hpp"
#include "epmoe/moe/placement.hpp"

namespace epmoe {
namespace {

// The figures of one run after its warm-up steps: [kNumColumns], NaN where not measured. The last two (the
// perplexity of `epmoe eval` and its difference to the baseline's) only in --mode eval.
// rank/expert max/mean: the last step's, then (`_steps`) their mean over the measured steps: what a policy keeps
// up under drift, where one step is a noisy sample.
constexpr int kNumColumns = 11, kRunColumns = 9, kPpl = 9, kDeltaPpl = 10;
const char* const kColumns[kNumColumns] = {"tokens_per_s",
                                           "step_p99_s",
                                           "rank_max_over_mean",
                                           "expert_max_over_mean",
                                           "joules_per_token",
                                           "changed_assignment_fraction",
                                           "output_rel_l2",
                                           "rank_max_over_mean_steps",
                                           "expert_max_over_mean_steps",
                                           "ppl",
                                           "delta_ppl"};
using Figures = std::array<double, kNumColumns>;

int columns(const CompareOptions& options) { return options.eval ? kNumColumns : kRunColumns; }

double number_or_nan(const Json& v) { return v.is_number() ? v.get<double>() : NAN; }

// Mean of a metrics field over the lines, NaN if any line lacks it.
double mean_of(const std::vector<Json>& lines, const char* group, const char* key) {
    double sum = 0;
    for (const Json& l : lines) sum += number_or_nan(l[group][key]);
    return sum / static_cast<double>(lines.size());
}

// The figures of the run in `dir` from its metrics.jsonl lines whose steps all come after the warm-up.
Figures run_figures(const std::string& dir, int warmup) {
    std::vector<Json> lines;
    std::ifstream in(dir + "/metrics.jsonl");
    for (std::string text; std::getline(in, text);) {
        Json line = Json::parse(text);
        if (line["first_step"].get<int>() >= warmup) lines.push_back(std::move(line));
    }
    if (lines.empty()) fail(dir, "/metrics.jsonl: no line after the ", warmup, " warm-up step(s)");
    double tokens = 0, seconds = 0, joules = 0;
    std::vector<double> step_s;
    for (const Json& l : lines) {
        tokens += l["tokens"].get<double>();
        seconds += l["step_time_s"].get<double>();
        joules += number_or_nan(l["energy"]["joules"]);
        step_s.push_back(l["step_time_s"].get<double>() / l["steps_covered"].get<double>());
    }
    std::sort(step_s.begin(), step_s.end());
    const size_t p99 = static_cast<size_t>(std::ceil(0.99 * static_cast<double>(step_s.size()))) - 1;
    double ppl = NAN;
    if (std::ifstream eval_json(dir + "/eval.json"); eval_json)
        ppl = number_or_nan(Json::parse(eval_json)["perplexity"]);
    return {tokens / seconds,
            step_s[p99],
            number_or_nan(lines.back()["load"]["rank_max_over_mean"]),
            number_or_nan(lines.back()["load"]["max_over_mean"]),
            joules / tokens,
            mean_of(lines, "fidelity", "changed_assignment_fraction"),
            mean_of(lines, "fidelity", "output_rel_l2"),
            mean_of(lines, "load", "rank_max_over_mean"),
            mean_of(lines, "load", "max_over_mean"),
            ppl,
            NAN};
}

// delta_ppl of every run: its perplexity less the baseline's median (pair 0).
void add_delta_ppl(std::vector<std::vector<Figures>>& figures) {
    std::vector<double> base;
    for (const Figures& f : figures[0]) base.push_back(f[kPpl]);
    std::sort(base.begin(), base.end());
    const double median =
        base.size() % 2 ? base[base.size() / 2] : 0.5 * (base[base.size() / 2 - 1] + base[base.size() / 2]);
    for (auto& pair : figures)
        for (Figures& f : pair) f[kDeltaPpl] = f[kPpl] - median;
}

// Median, min and max over repeats of one figure (NaN if any repeat lacks it).
struct Spread {
    double median = NAN, min = NAN, max = NAN;
};

Spread spread(std::vector<double> v) {
    if (v.empty() || std::any_of(v.begin(), v.end(), [](double x) { return std::isnan(x); })) return {};
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return {n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]), v.front(), v.back()};
}

std::string number(double x) {
    if (std::isnan(x)) return "";
    std::ostringstream os;
    os.precision(6);
    os << x;
    return os.str();
}

// The ratio of a pair's median to the baseline's, when the repeats allow a conclusion: with one repeat there is
// no spread, and ranges that overlap do not tell the two apart.
std::string ratio_cell(const Spread& v, const Spread& base, int repeats, bool is_baseline) {
    if (std::isnan(v.median) || std::isnan(base.median)) return "n/a";
    if (is_baseline) return "1";
    if (repeats < 2) return "n/a (1 repeat: no spread)";
    if (v.min <= base.max && base.min <= v.max) return "~1 (ranges overlap)";
    if (base.median == 0) return "n/a";
    return number(v.median / base.median);
}

// One pair's row: csv and md cells of every column; figures[p][r] is pair p's repeat r, pair 0 the baseline.
void table_row(size_t p, const std::vector<std::vector<Figures>>& figures, const CompareOptions& options,
               std::ostringstream& csv, std::ostringstream& md) {
    for (int c = 0; c < columns(options); ++c) {
        std::vector<double> mine, base;
        for (const Figures& f : figures[p]) mine.push_back(f[c]);
        for (const Figures& f : figures[0]) base.push_back(f[c]);
        const Spread v = spread(mine), b = spread(base);
        const std::string r = c == kDeltaPpl ? "" : ratio_cell(v, b, options.repeats, p == 0);
        const bool numeric = std::isdigit(static_cast<unsigned char>(r[0])) != 0;
        csv << "," << number(v.median) << "," << number(v.min) << "," << number(v.max) << "," << (numeric ? r : "");
        md << " "
           << (std::isnan(v.median) ? "n/a" : number(v.median) + " (" + number(v.min) + "-" + number(v.max) + ")")
           << " | " << r << " |";
    }
}

// The results directory of one repeat of a pair.
std::string run_dir(const std::string& dir, const ComparePair& pair, int repeat) {
    return cat(dir, "/", pair.policy, "-", pair.placement, "-r", repeat);
}

// The energy source a run's summary.json names ("estimated (a model)" for the estimate), or "unknown".
std::string energy_source(const std::string& run_dir) {
    std::ifstream in(run_dir + "/summary.json");
    if (!in) return "unknown";
    const Json source = Json::parse(in)["energy"]["source"];
    if (!source.is_string()) return "unknown";
    const std::string name = source.get<std::string>();
    return name == "estimated" ? "estimated (a model of FLOPs, bytes and core-seconds, not a measurement)" : name;
}

// compare.csv and compare.md.
void write_tables(const std::string& dir, const std::vector<ComparePair>& pairs,
                  const std::vector<std::vector<Figures>>& figures, const CompareOptions& options) {
    std::ostringstream csv, md;
    csv << "pair,policy,placement,repeats";
    md << "| pair |";
    for (int i = 0; i < columns(options); ++i) {
        const char* c = kColumns[i];
        csv << "," << c << "," << c << "_min," << c << "_max," << c << "_ratio";
        md << " " << c << " (min-max) | ratio |";
    }
    csv << "\n";
    md << "\n|---|";
    for (int c = 0; c < columns(options); ++c) md << "---:|---:|";
    md << "\n";
    for (size_t p = 0; p < pairs.size(); ++p) {
        csv << pairs[p].label() << "," << pairs[p].policy << "," << pairs[p].placement << "," << options.repeats;
        md << "| " << pairs[p].label() << " |";
        table_row(p, figures, options, csv, md);
        csv << "\n";
        md << "\n";
    }
    md << "\nEach figure: the median over " << options.repeats
       << " repeat(s) run in an interleaved order, with min-max,"
       << " after " << options.warmup << " warm-up step(s). ratio = median / median of " << pairs[0].label()
       << " (the baseline), given only where the two min-max ranges do not overlap; rank and expert max/mean are "
       << "the last step's, averaged over MoE layers (`_steps`: their mean over the measured steps); n/a = not "
          "measured or undefined."
       << (options.eval ? " ppl: the perplexity of `epmoe eval` over every window (all steps); delta_ppl = ppl - the "
                          "baseline's."
                        : "")
       << " joules_per_token: energy source " << energy_source(run_dir(dir, pairs[0], 0)) << ".\n";
    write_text_file(dir + "/compare.csv", csv.str());
    write_text_file(dir + "/compare.md", md.str());
}

// The config of one pair and repeat: the shared config with policy.name, placement.name, the warm-up steps added
// and output.dir set.
Config pair_config(const Config& base, const ComparePair& pair, int repeat, const std::string& dir,
                   const CompareOptions& options) {
    Json j = *base.json;
    apply_set(j, "policy.name=" + pair.policy);
    apply_set(j, "placement.name=" + pair.placement);
    apply_set(j, cat("workload.steps=", base.workload.steps + options.warmup));
    apply_set(j, "output.dir=" + run_dir(dir, pair, repeat));
    apply_set(j, "output.quiet=true");
    const bool needs_profile = pair.placement == "balanced" || pair.placement == "replicated";
    if (base.placement.profile.empty() && needs_profile)
        apply_set(j, "placement.profile=" + dir + "/none-contiguous-r0");
    Config config = Config::from_json(j);
    config.command_line = base.command_line;
    return config;
}

}  // namespace

const char* const kDefaultComparePairs = "none/contiguous,aux_free/contiguous,prev_batch/contiguous,none/replicated";

std::vector<ComparePair> parse_pairs(const std::string& text) {
    std::vector<ComparePair> out;
    std::istringstream in(text);
    for (std::string item; std::getline(in, item, ',');) {
        size_t slash = item.find('/');
        if (slash == std::string::npos || slash == 0 || slash + 1 == item.size())
            fail("--pairs ", text, ": '", item, "' is not POLICY/PLACEMENT (e.g. aux_free/contiguous)");
        out.push_back({item.substr(0, slash), item.substr(slash + 1)});
    }
    if (out.empty()) fail("--pairs '", text, "': no pairs");
    return out;
}

int compare(const mpi::Comm& world, const Config& base, std::vector<ComparePair> pairs, const CompareOptions& options) {
    std::vector<std::vector<Config>> configs;  // [pair][repeat]
    std::string dir;
    mpi::all_or_none(world, [&] {
        if (options.warmup < 0 || options.repeats < 1)
            fail("epmoe compare: --warmup ", options.warmup, " must be >= 0 and --repeats ", options.repeats, " >= 1");
        for (const auto& pair : pairs) check_policy_name(pair.policy), check_placement_name(pair.placement);
        std::erase_if(pairs, [](const ComparePair& p) { return p.policy == "none" && p.placement == "contiguous"; });
        pairs.insert(pairs.begin(), {"none", "contiguous"});  // the baseline runs first; its run is the profile
        if (world.rank() != 0) return;
        dir = base.output.dir.empty() ? default_results_dir("compare") : base.output.dir;
        check_results_dir(dir, base.output.overwrite);
    });
    dir = mpi::allgather_strings(world, dir)[0];  // rank 0 named it
    mpi::all_or_none(world, [&] {
        for (const auto& pair : pairs) {
            configs.emplace_back();
            for (int r = 0; r < options.repeats; ++r)
                configs.back().push_back(pair_config(base, pair, r, dir, options));
        }
    });
    std::vector<std::vector<Figures>> figures(pairs.size());
    for (int r = 0; r < options.repeats; ++r)  // interleaved: every pair once, then every pair again
        for (size_t p = 0; p < pairs.size(); ++p) {
            if (options.eval)
                eval_job(world, configs[p][r], false);
            else
                run_job(world, configs[p][r], false);
            mpi::all_or_none(world, [&] {
                if (world.rank() != 0) return;
                figures[p].push_back(run_figures(configs[p][r].output.dir, options.warmup));
                std::fprintf(stderr, "epmoe compare: [%zu/%zu] %s repeat %d: %.0f tokens/s after %d warm-up step(s)\n",
                             r * pairs.size() + p + 1, pairs.size() * options.repeats, pairs[p].label().c_str(), r + 1,
                             figures[p].back()[0], options.warmup);
            });
        }
    mpi::all_or_none(world, [&] {
        if (world.rank() != 0) return;
        if (options.eval) add_delta_ppl(figures);
        write_tables(dir, pairs, figures, options);
        std::ifstream md(dir + "/compare.md");
        std::cout << md.rdbuf() << "results: " << dir << std::endl;
    });
    return 0;
}

}  // namespace epmoe
