// The results directory (rank 0 only): config.json, metrics.jsonl, metrics.csv and summary.json, each written under a
// temporary name and renamed when the run succeeds, so a failed or killed run leaves nothing that looks
// complete.
#pragma once

#include <fstream>
#include <string>
#include <vector>

#include "epmoe/base/json.hpp"

namespace epmoe {

// Now in UTC, ISO 8601 to the second: "2026-12-03T09:40:00Z".
std::string utc_now();

// results/<UTC timestamp>-<policy> under the current directory, made unique with a -N suffix.
std::string default_results_dir(const std::string& policy);

// Writes text to path through path + ".tmp" and a rename: a reader never sees half a file. Fails naming path.
void write_text_file(const std::string& path, const std::string& text);

// Refuses a directory that already holds results (summary.json, config.json, metrics.jsonl, compare.csv or
// compare.md of an earlier run) unless overwrite: fails naming the directory and the file, so that a typo in
// --out loses nothing. A missing or empty directory is fine.
void check_results_dir(const std::string& dir, bool overwrite);

class ResultsWriter {
public:
    // Checks dir (check_results_dir), creates it (and parents) and opens metrics.jsonl.tmp; with overwrite,
    // removes an earlier run's final files there. Fails naming the directory when it cannot be written.
    ResultsWriter(const std::string& dir, bool overwrite);

    // Appends one JSON line to metrics.jsonl.tmp, and its rows to metrics.csv.tmp (one a rank: the line's scalar
    // fields, per-rank lists as the rank's value, the rank's rows summed over layers), and flushes both.
    void append_step(const Json& line);

    // Writes config.json and summary.json and renames every file into place, summary.json last; metrics.jsonl and
    // metrics.csv only when a step line was appended.
    void finish(const Json& config, const Json& summary);

    // The path to write a command's own result file `name` to (NAME.tmp in the directory); finish() renames it
    // into place before summary.json.
    std::string stage(const std::string& name);
    // Writes JSON file `name` (stage()'d).
    void stage_json(const std::string& name, const Json& j);

    const std::string& dir() const { return dir_; }

private:
    void append_csv(const Json& line);

    std::string dir_;
    std::ofstream metrics_, csv_;
    bool csv_header_ = false;          // written with the first line
    bool any_step_ = false;            // a line was appended: metrics.jsonl and .csv are kept, else removed
    std::vector<std::string> staged_;  // the command's own files, renamed into place by finish()
};

}  // namespace epmoe
