#include "epmoe/io/results.hpp"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>

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

}  // namespace

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
    for (const char* name : {"summary.json", "config.json", "metrics.jsonl", "compare.csv", "compare.md"})
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
    for (const char* name : {"summary.json", "config.json", "metrics.jsonl"}) fs::remove(fs::path(dir_) / name, ec);
    fs::path metrics = fs::path(dir_) / "metrics.jsonl.tmp";
    metrics_.open(metrics, std::ios::trunc);
    if (!metrics_)
        fail("results directory ", dir_, ": cannot write ", metrics.string(), " (", std::strerror(errno), ")");
}

void ResultsWriter::append_step(const Json& line) {
    metrics_ << line.dump() << '\n';
    metrics_.flush();
    if (!metrics_) fail(dir_, "/metrics.jsonl.tmp: write failed (disk full?)");
}

void ResultsWriter::finish(const Json& config, const Json& summary) {
    metrics_.close();
    const fs::path d(dir_);
    write_file(d / "config.json.tmp", config.dump(2) + "\n");
    write_file(d / "summary.json.tmp", summary.dump(2) + "\n");
    rename_into_place(d / "metrics.jsonl.tmp", d / "metrics.jsonl");
    rename_into_place(d / "config.json.tmp", d / "config.json");
    rename_into_place(d / "summary.json.tmp", d / "summary.json");
}

}  // namespace epmoe
