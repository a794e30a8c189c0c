#include "epmoe/control/coordinator.hpp"

#include <cmath>
#include <limits>

#include "epmoe/base/error.hpp"

namespace epmoe {

RankRecord::RankRecord(int num_layers) : values(kFixed + num_layers, 0.0) {
    values[kJoules] = values[kHostJoules] = values[kPowerW] = values[kTempC] = std::numeric_limits<double>::quiet_NaN();
}

void RankRecord::accumulate(const RankRecord& other) {
    EPMOE_ASSERT(other.values.size() == values.size());
    for (size_t i = 0; i < values.size(); ++i) {
        if (i == kPowerW || i == kTempC) {
            if (!std::isnan(other.values[i])) values[i] = other.values[i];
        } else if (i == kJoules || i == kHostJoules) {
            if (!std::isnan(other.values[i]))
                values[i] = std::isnan(values[i]) ? other.values[i] : values[i] + other.values[i];
        } else {
            values[i] += other.values[i];
        }
    }
}

void RankRecord::set_fidelity(const FidelityCounts& f) {
    const double fields[] = {f.changed_slots, f.slots, f.changed_tokens, f.tokens, f.diff_sq, f.ref_sq, f.seconds};
    for (int i = 0; i < 7; ++i) values[kChangedSlots + i] = fields[i];
}

Coordinator::Coordinator(const mpi::Comm& comm, int num_layers, int num_experts, std::unique_ptr<Policy> policy)
    : comm_(comm),
      num_layers_(num_layers),
      num_experts_(num_experts),
      policy_(std::move(policy)),
      biases_(static_cast<size_t>(num_layers) * num_experts, 0.0f),
      pending_(num_layers),
      pending_load_(static_cast<size_t>(num_layers) * (num_experts + 2), 0) {}

void Coordinator::record(const RankRecord& record, std::span<const LayerLoad> layers) {
    EPMOE_ASSERT(static_cast<int>(layers.size()) == num_layers_);
    pending_.accumulate(record);
    const size_t le = static_cast<size_t>(num_layers_) * num_experts_;
    for (int l = 0; l < num_layers_; ++l) {
        const LayerLoad& r = layers[l];
        for (int e = 0; e < num_experts_; ++e) pending_load_[l * num_experts_ + e] += r.expert_load[e];
        pending_load_[le + l] += r.dropped;
        pending_load_[le + num_layers_ + l] += r.assigned;
    }
}

CoordinatorReport Coordinator::round(int step) {
    double t0 = mpi::wtime();
    CoordinatorReport report;
    std::vector<double> gathered = mpi::gather_to_root<double>(comm_, pending_.values);
    mpi::allreduce<int64_t>(comm_, pending_load_, mpi::Op::kSum);
    if (comm_.rank() == 0) {
        const size_t width = pending_.values.size(), le = static_cast<size_t>(num_layers_) * num_experts_;
        for (int r = 0; r < comm_.size(); ++r) {
            RankRecord rec(num_layers_);
            std::copy(gathered.begin() + r * width, gathered.begin() + (r + 1) * width, rec.values.begin());
            report.ranks.push_back(rec);
        }
        report.expert_load.assign(pending_load_.begin(), pending_load_.begin() + le);
        report.dropped.assign(pending_load_.begin() + le, pending_load_.begin() + le + num_layers_);
        report.assigned.assign(pending_load_.begin() + le + num_layers_, pending_load_.end());
        StepObservation obs;
        obs.step = step;
        obs.round = rounds_;
        obs.num_layers = num_layers_;
        obs.num_experts = num_experts_;
        obs.expert_load = report.expert_load;
        for (const auto& rec : report.ranks) {
            obs.rank_busy_s.push_back(rec[RankRecord::kCompute]);
            double rows = 0;
            for (int l = 0; l < num_layers_; ++l) rows += rec.rows(l);
            obs.rank_rows.push_back(rows);
            obs.rank_power_w.push_back(rec[RankRecord::kPowerW]);
            obs.rank_temp_c.push_back(rec[RankRecord::kTempC]);
            if (!std::isnan(rec[RankRecord::kJoules])) obs.rank_joules.push_back(rec[RankRecord::kJoules]);
        }
        if (obs.rank_joules.size() != report.ranks.size()) obs.rank_joules.clear();
        policy_->update(obs, biases_);
    }
    mpi::bcast<float>(comm_, biases_, 0);
    pending_ = RankRecord(num_layers_);
    ++rounds_;
    std::fill(pending_load_.begin(), pending_load_.end(), 0);
    report.seconds = mpi::wtime() - t0;
    return report;
}

}  // namespace epmoe
