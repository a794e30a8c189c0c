// Which rank holds which expert. The same placement holds for every layer.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace epmoe {

class Placement {
public:
    // contiguous: rank floor(e * P / E) owns expert e (blocks; some ranks own none when P > E).
    // round_robin: rank e mod P owns expert e.
    // balanced: greedy from profile (longest-processing-time first): experts by descending load, each to
    //   the rank with the least load so far among those holding fewer than ceil(E / P) experts.
    // replicated: contiguous, then the `replicas` hottest experts by profile each get one extra copy on the
    //   least-loaded rank not holding it (rank load = sum of load / copies); tokens split among copies.
    // profile: [num_experts] load per expert (read_load_profile); required by balanced and replicated.
    static Placement make(const std::string& name, int num_experts, int num_ranks, std::span<const double> profile = {},
                          int replicas = 0);

    // The rank that runs expert e for a token (several when the expert is replicated; the split is by
    // global token index, so it is deterministic and independent of the rank count of the sender).
    int rank_for(int expert, int64_t global_token) const;
    bool owns(int rank, int expert) const;
    // Experts with a copy on rank, ascending.
    std::vector<int> experts_of(int rank) const;
    // The copies as slots, in (rank, expert) order: rank r's copies are slots first_slot(r) ..
    // first_slot(r + 1) - 1, its experts ascending. Dispatch counts rows per slot, so a rank sends each
    // peer only the counts of the experts that peer holds (O(E) per rank, not O(ranks x E)).
    int num_slots() const { return first_slot_.back(); }
    int first_slot(int rank) const { return first_slot_[rank]; }
    int slot(int rank, int expert) const;  // the slot of rank's copy of expert; the rank must hold it
    // [num_experts] -> ranks holding a copy; the first is the primary.
    const std::vector<std::vector<int>>& owners() const { return replicas_; }
    int num_experts() const { return static_cast<int>(replicas_.size()); }
    int num_ranks() const { return num_ranks_; }
    const std::string& name() const { return name_; }

private:
    std::string name_;
    int num_ranks_ = 1;
    std::vector<std::vector<int>> replicas_;  // [num_experts] -> ranks holding a copy
    std::vector<std::vector<int>> slots_;     // [num_experts] -> slot of each copy, parallel to replicas_
    std::vector<int> first_slot_;             // [num_ranks + 1]
};

// The names Placement::make knows, in table order: contiguous, round_robin, balanced, replicated.
std::vector<std::string> placement_names();

// Fails naming placement.name and the known names when `name` is not one of placement_names().
void check_placement_name(const std::string& name);

// The load profile of an earlier run: [num_experts] kept assignments per expert, summed over every layer
// and line of <dir>/metrics.jsonl. Fails naming the file when it is missing, unreadable or of another shape.
std::vector<double> read_load_profile(const std::string& dir, int num_experts);

}  // namespace epmoe
