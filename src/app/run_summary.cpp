#include "app/run_summary.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "epmoe/control/metrics.hpp"

namespace epmoe {
namespace {

// Counts carried as doubles, as integers.
std::vector<int64_t> counts(const std::vector<double>& values) {
    std::vector<int64_t> out;
    for (double v : values) out.push_back(std::llround(v));
    return out;
}

const char* kPhaseNames[] = {"gate", "dispatch", "expert", "combine", "coordinator"};
const RankRecord::Field kPhaseFields[] = {RankRecord::kGate, RankRecord::kDispatch, RankRecord::kExpert,
                                          RankRecord::kCombine};

Json per_rank(const CoordinatorReport& report, RankRecord::Field f) {
    Json out = Json::array();
    for (const auto& r : report.ranks) out.push_back(r[f]);
    return out;
}

// A count per rank (tokens, rows) as integers: the record carries them as doubles.
Json per_rank_count(const CoordinatorReport& report, RankRecord::Field f) {
    Json out = Json::array();
    for (const auto& r : report.ranks) out.push_back(std::llround(r[f]));
    return out;
}

// A metrics line's per_rank: each rank's tokens, seconds, bytes sent through MPI and expert rows run.
Json per_rank_json(const CoordinatorReport& report) {
    return {{"tokens", per_rank_count(report, RankRecord::kTokens)},
            {"compute_s", per_rank(report, RankRecord::kCompute)},
            {"expert_s", per_rank(report, RankRecord::kExpert)},
            {"dispatch_s", per_rank(report, RankRecord::kDispatch)},
            {"combine_s", per_rank(report, RankRecord::kCombine)},
            {"sent_bytes_on_host", per_rank_count(report, RankRecord::kSentBytesOnHost)},
            {"sent_bytes_off_host", per_rank_count(report, RankRecord::kSentBytesOffHost)},
            {"rows_run", per_rank_count(report, RankRecord::kRowsRun)}};
}

// Fidelity of the sums f = RankRecord kChangedSlots..kFidelityS over ranks (and rounds). output_rel_l2 is
// 0 when no assignment changed (identical routing), null when assignments changed but nothing was sampled.
Json fidelity_json(const double* f, int num_ranks) {
    const double changed_slots = f[0], slots = f[1], changed_tokens = f[2], tokens = f[3], diff = f[4], ref = f[5];
    Json rel = changed_slots == 0 ? Json(0.0) : (ref > 0 ? Json(std::sqrt(diff / ref)) : Json(nullptr));
    return {{"changed_assignment_fraction", slots > 0 ? changed_slots / slots : 0.0},
            {"changed_token_fraction", tokens > 0 ? changed_tokens / tokens : 0.0},
            {"output_rel_l2", rel},
            {"fidelity_s", f[6] / num_ranks}};
}

}  // namespace

RunSummary::RunSummary(int num_ranks, std::vector<uint8_t> moe_layer, int num_experts, double expert_flops_per_token)
    : num_ranks_(num_ranks),
      num_layers_(static_cast<int>(moe_layer.size())),
      moe_layer_(std::move(moe_layer)),
      num_experts_(num_experts),
      flops_per_token_(expert_flops_per_token),
      rank_joules_(num_ranks, 0.0) {}

Json RunSummary::add_energy(const CoordinatorReport& report, double seconds) {
    Json per_rank = Json::array(), hosts = Json::array();
    double joules = 0;
    bool measured = true;
    for (int r = 0; r < num_ranks_; ++r) {
        const RankRecord& rec = report.ranks[r];
        if (std::isnan(rec[RankRecord::kJoules])) {
            measured = false;
            continue;
        }
        joules += rec[RankRecord::kJoules];
        rank_joules_[r] += rec[RankRecord::kJoules];
        per_rank.push_back(rec[RankRecord::kJoules]);
        if (!std::isnan(rec[RankRecord::kHostJoules])) {
            auto opt = [](double x) { return std::isnan(x) ? Json(nullptr) : Json(x); };
            hosts.push_back({{"reader_rank", r},
                             {"joules", rec[RankRecord::kHostJoules]},
                             {"power_w", opt(rec[RankRecord::kPowerW])},
                             {"temp_c", opt(rec[RankRecord::kTempC])}});
        }
    }
    energy_measured_ = energy_measured_ && measured;
    if (!measured)
        return {{"joules", nullptr}, {"avg_power_w", nullptr}, {"per_rank_joules", nullptr}, {"hosts", nullptr}};
    return {{"joules", joules},
            {"avg_power_w", seconds > 0 ? Json(joules / seconds) : Json(nullptr)},
            {"per_rank_joules", per_rank},
            {"hosts", hosts}};
}

RunSummary::LoadStats RunSummary::load_stats(const CoordinatorReport& report, Json* layers_out) const {
    LoadStats s;
    const double moe_layers = static_cast<double>(std::count(moe_layer_.begin(), moe_layer_.end(), 1));
    for (int l = 0; l < num_layers_; ++l) {
        std::vector<double> load(report.expert_load.begin() + l * num_experts_,
                                 report.expert_load.begin() + (l + 1) * num_experts_);
        std::vector<double> rank_load;
        for (const auto& r : report.ranks) rank_load.push_back(r.rows(l));
        Json entry = {{"kind", moe_layer_[l] ? "moe" : "dense"},
                      {"expert_load", Json(std::vector<int64_t>(load.begin(), load.end()))},
                      {"dropped", report.dropped[l]},
                      {"assigned", report.assigned[l]},
                      {"rank_rows", counts(rank_load)}};
        if (!moe_layer_[l]) {  // no experts, no routing: no load figures, and none enter the means over layers
            for (const char* key : {"max_over_mean", "cv", "gini", "entropy", "rank_max_over_mean", "rank_cv",
                                    "rank_gini", "balancedness"})
                entry[key] = nullptr;
            layers_out->push_back(entry);
            continue;
        }
        const double mom = max_over_mean(load), cv = coefficient_of_variation(load), g = gini(load);
        const double rmom = max_over_mean(rank_load), ent = normalized_entropy(load), bal = balancedness(rank_load);
        const double rcv = coefficient_of_variation(rank_load), rg = gini(rank_load);
        s.max_over_mean += mom / moe_layers;
        s.cv += cv / moe_layers;
        s.gini += g / moe_layers;
        s.entropy += ent / moe_layers;
        s.rank_max_over_mean += rmom / moe_layers;
        s.rank_cv += rcv / moe_layers;
        s.rank_gini += rg / moe_layers;
        s.balancedness += bal / moe_layers;
        entry.update({{"max_over_mean", mom},
                      {"cv", cv},
                      {"gini", g},
                      {"rank_max_over_mean", rmom},
                      {"entropy", ent},
                      {"rank_cv", rcv},
                      {"rank_gini", rg},
                      {"balancedness", bal}});
        layers_out->push_back(entry);
    }
    return s;
}

Json RunSummary::add_round(const CoordinatorReport& report, int first_step, std::span<const double> step_times,
                           std::span<const float> biases) {
    int64_t tokens = 0;
    const double seconds = std::accumulate(step_times.begin(), step_times.end(), 0.0);
    for (const auto& r : report.ranks) {
        tokens += std::llround(r[RankRecord::kTokens]);
        expert_flops_ += r[RankRecord::kExpertFlops];
        expert_seconds_ += r[RankRecord::kExpert];
    }
    tokens_total_ += tokens;
    step_times_.insert(step_times_.end(), step_times.begin(), step_times.end());
    Json breakdown;
    for (int p = 0; p < 4; ++p) {
        double mean = 0;
        for (const auto& r : report.ranks) mean += r[kPhaseFields[p]] / num_ranks_;
        phase_[p] += mean;
        breakdown[kPhaseNames[p]] = mean;
    }
    phase_[4] += report.seconds;
    breakdown["coordinator"] = report.seconds;
    for (int l = 0; l < num_layers_; ++l) {
        dropped_ += report.dropped[l];
        assigned_ += report.assigned[l];
    }
    Json layers = Json::array();
    LoadStats stats = load_stats(report, &layers);
    if (!have_first_) first_ = stats, have_first_ = true;
    last_ = stats;
    Json bias_rows = Json::array();
    for (int l = 0; l < num_layers_; ++l)
        bias_rows.push_back(
            std::vector<float>(biases.begin() + l * num_experts_, biases.begin() + (l + 1) * num_experts_));
    Json line;
    line["step"] = first_step + static_cast<int>(step_times.size()) - 1;  // the last step the line covers
    line["first_step"] = first_step;
    line["steps_covered"] = step_times.size();
    line["tokens"] = tokens;
    line["step_time_s"] = seconds;
    line["tokens_per_s"] = seconds > 0 ? Json(static_cast<double>(tokens) / seconds) : Json(nullptr);
    line["time_breakdown_s"] = breakdown;
    line["per_rank"] = per_rank_json(report);
    line["load"] = load_json(stats);
    double fidelity[7];
    for (int f = 0; f < 7; ++f) {
        fidelity[f] = 0;
        for (const auto& r : report.ranks)
            fidelity[f] += r[static_cast<RankRecord::Field>(RankRecord::kChangedSlots + f)];
        fidelity_[f] += fidelity[f];
    }
    line["fidelity"] = fidelity_json(fidelity, num_ranks_);
    line["layers"] = layers;
    line["energy"] = add_energy(report, seconds);
    line["biases"] = bias_rows;
    return line;
}

Json RunSummary::load_json(const LoadStats& s) {
    return {{"max_over_mean", s.max_over_mean},
            {"cv", s.cv},
            {"gini", s.gini},
            {"entropy", s.entropy},
            {"rank_max_over_mean", s.rank_max_over_mean},
            {"rank_cv", s.rank_cv},
            {"rank_gini", s.rank_gini},
            {"balancedness", s.balancedness}};
}

double RunSummary::seconds_so_far() const { return std::accumulate(step_times_.begin(), step_times_.end(), 0.0); }

Json RunSummary::summary(const std::string& policy, const std::string& energy_source,
                         const Json& energy_details) const {
    const double seconds = seconds_so_far();
    Json s;
    s["ranks"] = num_ranks_;
    s["steps"] = step_times_.size();
    s["tokens_total"] = tokens_total_;
    s["tokens_per_s"] = seconds > 0 ? Json(static_cast<double>(tokens_total_) / seconds) : Json(nullptr);
    s["step_time_s"] = {
        {"p50", quantile(step_times_, 0.5)}, {"p99", quantile(step_times_, 0.99)}, {"max", quantile(step_times_, 1.0)}};
    Json breakdown;
    for (int p = 0; p < 5; ++p) breakdown[kPhaseNames[p]] = phase_[p];
    s["time_breakdown_s"] = breakdown;
    s["expert_gflops"] = expert_seconds_ > 0 ? Json(expert_flops_ / expert_seconds_ / 1e9) : Json(nullptr);
    s["load"] = {{"max_over_mean_first", first_.max_over_mean},
                 {"max_over_mean_last", last_.max_over_mean},
                 {"cv_last", last_.cv},
                 {"gini_last", last_.gini},
                 {"rank_max_over_mean_last", last_.rank_max_over_mean},
                 {"first", load_json(first_)},
                 {"last", load_json(last_)}};
    s["drop_rate"] = assigned_ > 0 ? static_cast<double>(dropped_) / static_cast<double>(assigned_) : 0.0;
    Json energy = {{"source", energy_source},
                   {"joules", nullptr},
                   {"joules_per_token", nullptr},
                   {"avg_power_w", nullptr},
                   {"per_rank_joules", nullptr}};
    if (energy_source != "none" && energy_measured_ && !step_times_.empty()) {
        double joules = std::accumulate(rank_joules_.begin(), rank_joules_.end(), 0.0);
        energy["joules"] = joules;
        energy["joules_per_token"] =
            tokens_total_ > 0 ? Json(joules / static_cast<double>(tokens_total_)) : Json(nullptr);
        energy["avg_power_w"] = seconds > 0 ? Json(joules / seconds) : Json(nullptr);
        energy["per_rank_joules"] = rank_joules_;
        energy["per_rank_joules_method"] =
            "each host's joules counted once (read by one rank per host) and shared among its ranks by busy time "
            "(gate + expert seconds)";
    }
    for (auto it = energy_details.begin(); it != energy_details.end(); ++it) energy[it.key()] = it.value();
    s["energy"] = energy;
    s["routing"] = {{"policy", policy}};
    s["routing"].update(fidelity_json(fidelity_, num_ranks_));
    return s;
}

std::string RunSummary::human(const Json& s) const {
    std::ostringstream os;
    os.setf(std::ios::fixed);
    const double seconds = seconds_so_far();
    os.precision(3);
    os << "epmoe run: " << num_ranks_ << " ranks, " << step_times_.size() << " steps, " << tokens_total_
       << " tokens in " << seconds << " s\n";
    os.precision(0);
    os << "  tokens/s      " << s["tokens_per_s"].get<double>() << "\n";
    os.precision(4);
    os << "  step time     p50 " << s["step_time_s"]["p50"].get<double>() << " s   p99 "
       << s["step_time_s"]["p99"].get<double>() << " s   max " << s["step_time_s"]["max"].get<double>() << " s\n";
    os.precision(1);
    double total = 0;
    for (int p = 0; p < 5; ++p) total += phase_[p];
    os << "  breakdown    ";
    for (int p = 0; p < 5; ++p)
        os << " " << kPhaseNames[p] << " " << (total > 0 ? 100.0 * phase_[p] / total : 0) << "%";
    os.precision(2);
    os << "\n  imbalance     expert max/mean " << first_.max_over_mean << " (first step) -> " << last_.max_over_mean
       << " (last), rank max/mean " << first_.rank_max_over_mean << " -> " << last_.rank_max_over_mean << "\n";
    const Json& routing = s["routing"];
    os << "  fidelity      changed assignments " << routing["changed_assignment_fraction"].get<double>();
    if (routing["output_rel_l2"].is_number()) os << ", output rel. L2 " << routing["output_rel_l2"].get<double>();
    os << "\n";
    os << "  drop rate     " << s["drop_rate"].get<double>() << "\n";
    const Json& e = s["energy"];
    os << "  energy        source " << e["source"].get<std::string>();
    if (e["joules_per_token"].is_number()) {
        os.unsetf(std::ios::fixed);
        os.precision(4);
        os << ", " << e["joules_per_token"].get<double>() << " J/token, " << e["joules"].get<double>() << " J";
        if (e["source"] == "estimated" && e.contains("estimate")) {
            const Json& m = e["estimate"];
            os << "\n                (a model, not a measurement: " << m["pj_per_flop"].get<double>() << " pJ/FLOP, "
               << m["pj_per_byte"].get<double>() << " pJ/byte, " << m["idle_w_per_core"].get<double>()
               << " W a core idle; energy.estimate.*)";
        }
    } else {
        os << " (not measured)";
    }
    os << "\n";
    return os.str();
}

}  // namespace epmoe
