#include "epmoe/io/results.hpp"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <vector>

#include "epmoe/base/error.hpp"

namespace fs = std::filesystem;

namespace epmoe {
namespace {

void write_file(const fs::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::trunc);
    out << text;
    out.close();
    if (!out) fail(path.string(), ": cannot write (", std::strerror(errno), ")");
}

void rename_into_place(const fs::path& from, const fs::path& to) {
    std::error_code ec;
    fs::rename(from, to, ec);
    if (ec) fail(to.string(), ": cannot rename from ", from.string(), " (", ec.message(), ")");
}

// The fields of a metrics line metrics.csv leaves out: the per-layer and per-host lists, the biases and ttt's
// per-layer energy costs.
bool not_in_csv(const std::string& path) {
    return path.rfind("layers", 0) == 0 || path == "biases" || path.rfind("energy.hosts", 0) == 0 ||
           path == "ttt.rank_energy_cost";
}

// Lists [num_ranks] whose cell in a rank's row is that rank's element.
bool per_rank_field(const std::string& path) {
    return path.rfind("per_rank.", 0) == 0 || path == "energy.per_rank_joules";
}

// The leaves of a metrics line, objects joined with '.', in the line's order.
void csv_fields(const Json& j, const std::string& prefix, std::vector<std::pair<std::string, const Json*>>& out) {
    if (j.is_object()) {
        for (auto it = j.begin(); it != j.end(); ++it)
            csv_fields(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), out);
    } else if (!not_in_csv(prefix)) {
        out.emplace_back(prefix, &j);
    }
}

// A CSV cell: empty for null, strings quoted when they hold a comma or a quote.
std::string csv_cell(const Json& v) {
    if (v.is_null()) return "";
    if (!v.is_string()) return v.dump();
    const std::string s = v.get<std::string>();
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string out = "\"";
    for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
}

}  // namespace

void write_text_file(const std::string& path, const std::string& text) {
    write_file(path + ".tmp", text);
    rename_into_place(path + ".tmp", path);
}

std::string utc_now() {
    std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm utc{};
    gmtime_r(&now, &utc);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
    return text;
}

std::string default_results_dir(const std::string& policy) {
    std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm utc{};
    gmtime_r(&now, &utc);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &utc);
    std::string base = cat("results/", stamp, "-", policy);
    std::string dir = base;
    for (int i = 2; fs::exists(dir); ++i) dir = cat(base, "-", i);
    return dir;
}

void check_results_dir(const std::string& dir, bool overwrite) {
    if (overwrite) return;
    std::error_code ec;
    for (const char* name : {"summary.json", "config.json", "metrics.jsonl", "compare.csv", "compare.md", "eval.json",
                             "generated.jsonl", "generated.safetensors"})
        if (fs::exists(fs::path(dir) / name, ec))
            fail("results directory ", dir, " already holds results (", name, "): choose another --out, or pass ",
                 "--overwrite (output.overwrite=true) to replace them");
}

ResultsWriter::ResultsWriter(const std::string& dir, bool overwrite) : dir_(dir) {
    check_results_dir(dir_, overwrite);
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec) fail("results directory ", dir_, ": cannot create (", ec.message(), ")");
    if (!fs::is_directory(dir_)) fail("results directory ", dir_, ": exists and is not a directory");
    for (const char* name : {"summary.json", "config.json", "metrics.jsonl", "metrics.csv", "eval.json",
                             "generated.jsonl", "generated.safetensors"})
        fs::remove(fs::path(dir_) / name, ec);
    auto open_tmp = [&](std::ofstream& out, const char* name) {
        const fs::path path = fs::path(dir_) / name;
        out.open(path, std::ios::trunc);
        if (!out) fail("results directory ", dir_, ": cannot write ", path.string(), " (", std::strerror(errno), ")");
    };
    open_tmp(metrics_, "metrics.jsonl.tmp");
    open_tmp(csv_, "metrics.csv.tmp");
}

void ResultsWriter::append_step(const Json& line) {
    any_step_ = true;
    metrics_ << line.dump() << '\n';
    metrics_.flush();
    if (!metrics_) fail(dir_, "/metrics.jsonl.tmp: write failed (disk full?)");
    append_csv(line);
}

void ResultsWriter::append_csv(const Json& line) {
    std::vector<std::pair<std::string, const Json*>> fields;
    csv_fields(line, "", fields);
    if (!csv_header_) {
        csv_ << "rank,rank_rows";
        for (const auto& f : fields) csv_ << ',' << f.first;
        csv_ << '\n';
        csv_header_ = true;
    }
    const size_t num_ranks = line.at("per_rank").at("tokens").size();
    for (size_t r = 0; r < num_ranks; ++r) {
        int64_t rows = 0;  // this rank's expert rows over all layers
        for (const Json& layer : line.at("layers")) rows += layer.at("rank_rows").at(r).get<int64_t>();
        csv_ << r << ',' << rows;
        for (const auto& [name, value] : fields)
            csv_ << ',' << csv_cell(per_rank_field(name) && value->is_array() ? value->at(r) : *value);
        csv_ << '\n';
    }
    csv_.flush();
    if (!csv_) fail(dir_, "/metrics.csv.tmp: write failed (disk full?)");
}

void ResultsWriter::finish(const Json& config, const Json& summary) {
    metrics_.close();
    csv_.close();
    const fs::path d(dir_);
    write_file(d / "config.json.tmp", config.dump(2) + "\n");
    write_file(d / "summary.json.tmp", summary.dump(2) + "\n");
    if (any_step_) {
        rename_into_place(d / "metrics.jsonl.tmp", d / "metrics.jsonl");
        rename_into_place(d / "metrics.csv.tmp", d / "metrics.csv");
    } else {  // a command with no coordinator steps (train, tokenize's like): no empty files
        std::error_code ec;
        fs::remove(d / "metrics.jsonl.tmp", ec);
        fs::remove(d / "metrics.csv.tmp", ec);
    }
    rename_into_place(d / "config.json.tmp", d / "config.json");
    for (const std::string& name : staged_) rename_into_place(d / (name + ".tmp"), d / name);
    rename_into_place(d / "summary.json.tmp", d / "summary.json");
}

std::string ResultsWriter::stage(const std::string& name) {
    staged_.push_back(name);
    return (fs::path(dir_) / (name + ".tmp")).string();
}

void ResultsWriter::stage_json(const std::string& name, const Json& j) {
    write_file(fs::path(stage(name)), j.dump(2) + "\n");
}

}  // namespace epmoe
