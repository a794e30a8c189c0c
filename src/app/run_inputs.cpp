#include "app/run_inputs.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "epmoe/sim/sim.hpp"

namespace epmoe {

ModelSource::ModelSource(const mpi::Comm& comm, const Config& config, bool whole_model) : config_(config) {
    if (config.model.path.empty()) {
        shape_ = static_cast<const ModelShape&>(config.model);
        return;
    }
    mpi::all_or_none(comm, [&] {
        checkpoint_ = std::make_unique<Checkpoint>(Checkpoint::open(config.model.path, config.model));
        std::tie(first_layer_, last_layer_) =
            parse_layer_range(config.model.layers, checkpoint_->info().shape.num_layers);
        if (!whole_model) return;
        if (first_layer_ != 0 || last_layer_ + 1 != checkpoint_->info().shape.num_layers)
            fail("model.layers = \"", config.model.layers, "\": the whole model runs every layer (0-",
                 checkpoint_->info().shape.num_layers - 1, ")");
        checkpoint_->require_decoder();
    });
    shape_ = checkpoint_->info().shape;
    shape_.num_layers = last_layer_ - first_layer_ + 1;
}

ModelSource::~ModelSource() = default;

namespace {

// MemAvailable of /proc/meminfo, bytes; 0 when unreadable (then nothing is checked).
uint64_t host_memory_available() {
    std::ifstream in("/proc/meminfo");
    std::string key, unit;
    uint64_t kib = 0;
    while (in >> key >> kib >> unit)
        if (key == "MemAvailable:") return kib * 1024;
    return 0;
}

}  // namespace

uint64_t ModelSource::bytes_needed(int owned_experts, int64_t tokens) const {
    const double d = shape_.d_model, f = shape_.d_ff;
    // The FP32 weights held while a layer loads (a BF16 kernel converts each MLP after loading it): the gates,
    // norms and owned experts of every layer; dense and shared MLPs of a checkpoint beside them.
    double bytes = shape_.num_layers * (shape_.num_experts * d + d + owned_experts * 3.0 * d * f) * sizeof(float);
    if (checkpoint_) {
        const CheckpointInfo& info = checkpoint_->info();
        for (int l = first_layer_; l <= last_layer_; ++l) {
            if (!info.layers[l].moe) bytes += 3.0 * d * info.dense_d_ff * sizeof(float);
            if (info.layers[l].shared_expert) bytes += 3.0 * d * info.shared_d_ff * sizeof(float);
        }
    }
    // The hidden states, their norm and output, and the expert rows in and out (top_k per token), FP32.
    bytes += static_cast<double>(tokens) * d * (3.0 + 4.0 * shape_.top_k) * sizeof(float);
    return static_cast<uint64_t>(bytes);
}

void ModelSource::check_memory(const mpi::Comm& comm, int owned_experts, int64_t tokens) const {
    const mpi::Comm host = comm.split_shared();
    const uint64_t mine = bytes_needed(owned_experts, tokens);
    const uint64_t on_host = mpi::allreduce_one<uint64_t>(host, mine, mpi::Op::kSum);
    mpi::all_or_none(comm, [&] {
        const uint64_t available = host_memory_available();
        if (available == 0 || on_host <= available) return;
        const double gib = 1024.0 * 1024.0 * 1024.0;
        fail("the model needs about ", on_host / gib, " GiB on host ", mpi::processor_name(), " (", host.size(),
             " rank(s); this rank ", mine / gib, " GiB of weights and buffers) but the host has ", available / gib,
             " GiB available (MemAvailable, /proc/meminfo): use more ranks or hosts, or a smaller model");
    });
}

Model ModelSource::load(const mpi::Comm& comm, const std::function<bool(int)>& owns, int64_t tokens, bool in_place) {
    int owned = 0;
    for (int e = 0; e < shape_.num_experts; ++e) owned += owns(e) ? 1 : 0;
    if (!sim::simulated()) check_memory(comm, owned, tokens);
    std::shared_ptr<const MlpKernel> kernel;
    mpi::all_or_none(comm, [&] {
        kernel =
            make_mlp_kernel(config_.compute.backend, config_.compute.dtype, in_place, config_.compute.packs_weights(),
                            config_.compute.weight_panel_kib);  // checks the keys either way
        if (sim::simulated()) kernel = sim::simulated_kernel();
    });
    if (!checkpoint_)
        return make_synthetic_model(
            shape_, config_.seed, [&](int, int e) { return owns(e); }, kernel);
    Model model;
    mpi::all_or_none(comm, [&] {
        model = checkpoint_->load(first_layer_, last_layer_, owns, kernel,
                                  comm.rank() == 0 && !config_.output.quiet ? load_progress(owns) : nullptr);
    });
    return model;
}

// Rank 0's line while a checkpoint loads, every output.progress_interval_s: the layers and bytes it has read.
Checkpoint::LoadProgress ModelSource::load_progress(const std::function<bool(int)>& owns) const {
    const double start = mpi::wtime(), gb = 1e9;
    const double total = static_cast<double>(checkpoint_->shard_bytes(first_layer_, last_layer_, owns));
    const double before = static_cast<double>(checkpoint_->bytes_converted());
    return [this, start, gb, total, before, last = start](int read, int layers) mutable {
        const double now = mpi::wtime();
        if (read == layers || now - last <= config_.output.progress_interval_s) return;
        last = now;
        std::fprintf(stderr, "epmoe: loading %s: layer %d of %d, %.2f of %.2f GB (this rank's share), %.0f s\n",
                     checkpoint_->info().path.c_str(), read, layers,
                     (static_cast<double>(checkpoint_->bytes_converted()) - before) / gb, total / gb, now - start);
    };
}

DecoderWeights ModelSource::load_decoder(const mpi::Comm& comm) const {
    DecoderWeights w;
    mpi::all_or_none(comm, [&] {
        w = checkpoint_ ? checkpoint_->load_decoder(first_layer_, last_layer_)
                        : make_synthetic_decoder(shape_, config_.seed);
        check_decoder(w, shape_, checkpoint_ ? checkpoint_->info().path.c_str() : "the synthetic model");
    });
    return w;
}

Json ModelSource::describe() const {
    Json m = {{"num_layers", shape_.num_layers},
              {"d_model", shape_.d_model},
              {"d_ff", shape_.d_ff},
              {"num_experts", shape_.num_experts},
              {"top_k", shape_.top_k}};
    if (!checkpoint_) {
        m["source"] = "synthetic";
        return m;
    }
    const CheckpointInfo& info = checkpoint_->info();
    Json kinds = Json::array();
    for (int l = first_layer_; l <= last_layer_; ++l)
        kinds.push_back(!info.layers[l].moe ? "dense" : info.layers[l].shared_expert ? "moe+shared" : "moe");
    m["source"] = "checkpoint";
    m["family"] = family_name(info.family);
    m["path"] = info.path;
    m["layers"] = cat(first_layer_, "-", last_layer_);
    m["layer_kinds"] = kinds;
    m["norm_topk_prob"] = shape_.norm_topk_prob;
    m["rms_norm_eps"] = shape_.rms_norm_eps;
    return m;
}

namespace {

// This process's peak resident set so far (getrusage's ru_maxrss, KiB on Linux), bytes; -1 if unreadable.
double peak_rss_bytes() {
    rusage usage{};
    if (getrusage(RUSAGE_SELF, &usage) != 0) return -1;
    return static_cast<double>(usage.ru_maxrss) * 1024.0;
}

}  // namespace

Json ModelSource::memory(const mpi::Comm& comm, const Model& model) const {
    const double mine[3] = {static_cast<double>(model.weight_bytes()),
                            checkpoint_ ? static_cast<double>(checkpoint_->bytes_converted()) : 0.0, peak_rss_bytes()};
    std::vector<double> all = mpi::gather_to_root<double>(comm, std::span<const double>(mine, 3));
    if (comm.rank() != 0) return nullptr;
    Json held = Json::array(), read = Json::array(), rss = Json::array();
    for (int r = 0; r < comm.size(); ++r) {
        held.push_back(static_cast<uint64_t>(all[3 * r]));
        read.push_back(checkpoint_ ? Json(static_cast<uint64_t>(all[3 * r + 1])) : Json(nullptr));
        rss.push_back(all[3 * r + 2] < 0 ? Json(nullptr) : Json(static_cast<uint64_t>(all[3 * r + 2])));
    }
    return {{"weight_bytes_per_rank", held}, {"checkpoint_bytes_read_per_rank", read}, {"peak_rss_bytes", rss}};
}

TokenSource::TokenSource(const mpi::Comm& comm, const Config& config, int d_model) {
    if (config.workload.input.empty()) {
        synthetic_ = std::make_unique<SyntheticWorkload>(config.workload, d_model, config.seed);
        num_tokens_ = config.workload.tokens_per_rank;
        first_token_ = comm.rank() * num_tokens_;
        step_tokens_ = num_tokens_ * comm.size();
        return;
    }
    mpi::all_or_none(comm, [&] { input_ = load_input(config.workload.input, d_model, comm.rank(), comm.size()); });
    num_tokens_ = input_.num_rows;
    first_token_ = input_.first_row;
    step_tokens_ = input_.total_rows;
}

void TokenSource::fill(int step, std::span<float> h) const {
    if (synthetic_)
        synthetic_->fill(step, first_token_, num_tokens_, h);
    else {
        const size_t n = h.size();
        const size_t first = static_cast<size_t>(step % input_.num_steps) * n;
        std::copy(input_.rows.begin() + static_cast<std::ptrdiff_t>(first),
                  input_.rows.begin() + static_cast<std::ptrdiff_t>(first + n), h.begin());
    }
}

}  // namespace epmoe
