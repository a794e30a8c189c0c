#include "app/compare.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "app/run.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/control/policy.hpp"
#include "epmoe/io/results.hpp"
#include "epmoe/moe/placement.hpp"

namespace epmoe {
namespace {

// One column of the table: a header and where its value sits in summary.json (null = not measured).
struct Column {
    const char* name;
    Json (*get)(const Json& summary);
};
const Column kColumns[] = {
    {"tokens_per_s", [](const Json& s) { return s["tokens_per_s"]; }},
    {"step_p99_s", [](const Json& s) { return s["step_time_s"]["p99"]; }},
    {"rank_max_over_mean", [](const Json& s) { return s["load"]["rank_max_over_mean_last"]; }},
    {"expert_max_over_mean", [](const Json& s) { return s["load"]["max_over_mean_last"]; }},
    {"joules_per_token", [](const Json& s) { return s["energy"]["joules_per_token"]; }},
    {"changed_assignment_fraction", [](const Json& s) { return s["routing"]["changed_assignment_fraction"]; }},
    {"output_rel_l2", [](const Json& s) { return s["routing"]["output_rel_l2"]; }},
};

// value / baseline; 1 when both are equal (0/0 included); null when either is null or baseline is 0 alone.
Json ratio(const Json& value, const Json& baseline) {
    if (!value.is_number() || !baseline.is_number()) return nullptr;
    double v = value.get<double>(), b = baseline.get<double>();
    if (v == b) return 1.0;
    return b != 0 ? Json(v / b) : Json(nullptr);
}

std::string cell(const Json& x) {
    if (!x.is_number()) return "";
    std::ostringstream os;
    os.precision(6);
    os << x.get<double>();
    return os.str();
}

// Writes text to dir/name through a temporary file.
void write_file(const std::string& dir, const std::string& name, const std::string& text) {
    const std::string path = dir + "/" + name;
    std::ofstream out(path + ".tmp");
    out << text;
    out.close();
    if (!out) fail(path, ": cannot write");
    std::filesystem::rename(path + ".tmp", path);
}

// compare.csv and compare.md from each pair's summary; summaries[0] is the none/contiguous baseline.
void write_tables(const std::string& dir, const std::vector<ComparePair>& pairs, const std::vector<Json>& summaries) {
    std::ostringstream csv, md;
    csv << "pair,policy,placement";
    md << "| pair |";
    for (const auto& c : kColumns)
        csv << "," << c.name << "," << c.name << "_ratio", md << " " << c.name << " | ratio |";
    csv << "\n";
    md << "\n|---|";
    for (size_t i = 0; i < std::size(kColumns); ++i) md << "---:|---:|";
    md << "\n";
    for (size_t p = 0; p < pairs.size(); ++p) {
        csv << pairs[p].label() << "," << pairs[p].policy << "," << pairs[p].placement;
        md << "| " << pairs[p].label() << " |";
        for (const auto& c : kColumns) {
            Json v = c.get(summaries[p]), r = ratio(v, c.get(summaries[0]));
            csv << "," << cell(v) << "," << cell(r);
            md << " " << (v.is_number() ? cell(v) : "n/a") << " | " << (r.is_number() ? cell(r) : "n/a") << " |";
        }
        csv << "\n";
        md << "\n";
    }
    md << "\nratio = value / value of " << pairs[0].label() << " (the baseline); rank and expert max/mean are the "
       << "last step's, averaged over layers; n/a = not measured or undefined.\n";
    write_file(dir, "compare.csv", csv.str());
    write_file(dir, "compare.md", md.str());
}

// The config of one pair: the shared config with policy.name, placement.name and output.dir set.
Config pair_config(const Config& base, const ComparePair& pair, const std::string& dir, const std::string& profile) {
    Json j = *base.json;
    apply_set(j, "policy.name=" + pair.policy);
    apply_set(j, "placement.name=" + pair.placement);
    apply_set(j, "output.dir=" + dir + "/" + pair.policy + "-" + pair.placement);
    apply_set(j, "output.quiet=true");
    const bool needs_profile = pair.placement == "balanced" || pair.placement == "replicated";
    if (base.placement.profile.empty() && needs_profile) apply_set(j, "placement.profile=" + profile);
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

int compare(const mpi::Comm& world, const Config& base, std::vector<ComparePair> pairs) {
    std::vector<Config> configs;
    std::string dir;
    mpi::all_or_none(world, [&] {
        for (const auto& pair : pairs) check_policy_name(pair.policy), check_placement_name(pair.placement);
        std::erase_if(pairs, [](const ComparePair& p) { return p.policy == "none" && p.placement == "contiguous"; });
        pairs.insert(pairs.begin(), {"none", "contiguous"});  // the baseline runs first; its run is the profile
        if (world.rank() != 0) return;
        dir = base.output.dir.empty() ? default_results_dir("compare") : base.output.dir;
        check_results_dir(dir, base.output.overwrite);
    });
    dir = mpi::allgather_strings(world, dir)[0];  // rank 0 named it
    mpi::all_or_none(world, [&] {
        for (const auto& pair : pairs) configs.push_back(pair_config(base, pair, dir, dir + "/none-contiguous"));
    });
    std::vector<Json> summaries;
    for (size_t p = 0; p < pairs.size(); ++p) {
        summaries.push_back(run_job(world, configs[p], false));
        if (world.rank() != 0) continue;
        const Json& s = summaries.back();
        std::fprintf(stderr,
                     "epmoe compare: [%zu/%zu] %s: %.0f tokens/s, step p99 %.4f s, rank max/mean %.3f, changed %.4f\n",
                     p + 1, pairs.size(), pairs[p].label().c_str(), s["tokens_per_s"].get<double>(),
                     s["step_time_s"]["p99"].get<double>(), s["load"]["rank_max_over_mean_last"].get<double>(),
                     s["routing"]["changed_assignment_fraction"].get<double>());
    }
    mpi::all_or_none(world, [&] {
        if (world.rank() != 0) return;
        write_tables(dir, pairs, summaries);
        std::ifstream md(dir + "/compare.md");
        std::cout << md.rdbuf() << "results: " << dir << std::endl;
    });
    return 0;
}

}  // namespace epmoe
