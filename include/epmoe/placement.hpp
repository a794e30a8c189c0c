// Which rank owns which expert. The same placement holds for every layer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace epmoe {

class Placement {
public:
    // contiguous: rank floor(e * P / E) owns expert e (blocks; some ranks own none when P > E).
    // round_robin: rank e mod P owns expert e.
    static Placement make(const std::string& name, int num_experts, int num_ranks);

    // The rank that runs expert e for a token (several when the expert is replicated; the split is by
    // global token index, so it is deterministic and independent of the rank count of the sender).
    int rank_for(int expert, int64_t global_token) const;
    bool owns(int rank, int expert) const;
    // Experts with a copy on rank, ascending.
    std::vector<int> experts_of(int rank) const;
    int num_experts() const { return static_cast<int>(replicas_.size()); }
    int num_ranks() const { return num_ranks_; }
    const std::string& name() const { return name_; }

private:
    std::string name_;
    int num_ranks_ = 1;
    std::vector<std::vector<int>> replicas_;  // [num_experts] -> ranks holding a copy
};

}  // namespace epmoe
