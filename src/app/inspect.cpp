#include "app/inspect.hpp"

#include <boost/program_options.hpp>
#include <iostream>
#include <sstream>

#include "epmoe/base/error.hpp"

namespace po = boost::program_options;

namespace epmoe {
namespace {

// Layer kinds as runs: [{"layers": "0-2", "kind": "moe"}, ...].
Json layer_runs(const CheckpointInfo& info) {
    Json runs = Json::array();
    auto kind = [&](int l) {
        return !info.layers[l].moe ? "dense" : info.layers[l].shared_expert ? "moe+shared" : "moe";
    };
    const int n = static_cast<int>(info.layers.size());
    for (int a = 0, b = 0; a < n; a = b) {
        while (b < n && std::string(kind(b)) == kind(a)) ++b;
        runs.push_back({{"layers", a + 1 == b ? cat(a) : cat(a, "-", b - 1)}, {"kind", kind(a)}});
    }
    return runs;
}

std::string usage(const po::options_description& desc) {
    std::ostringstream os;
    os << "usage: epmoe inspect PATH [--ranks P] [--json]\n\nDescribes a Hugging Face MoE checkpoint (a directory, or "
          "one .safetensors file) from its config.json and headers, without reading weights.\n\n"
       << desc;
    return os.str();
}

}  // namespace

Json inspect_json(const Checkpoint& ck, int num_ranks) {
    const CheckpointInfo& info = ck.info();
    const ModelShape& s = info.shape;
    Json read = Json::array(), held = Json::array();
    for (int r = 0; r < num_ranks; ++r) {
        // contiguous placement: rank floor(e * P / E) owns expert e
        auto owns = [&](int e) { return static_cast<int64_t>(e) * num_ranks / s.num_experts == r; };
        read.push_back(ck.shard_bytes(0, s.num_layers - 1, owns));
        held.push_back(ck.shard_floats(0, s.num_layers - 1, owns) * sizeof(float));  // a fused tensor: own slices
    }
    Json dtypes = Json::object();
    for (const auto& [name, count] : ck.dtype_counts()) dtypes[name] = count;
    return {{"path", info.path},
            {"config", info.config_path},
            {"family", family_name(info.family)},
            {"num_layers", s.num_layers},
            {"layers", layer_runs(info)},
            {"d_model", s.d_model},
            {"d_ff", s.d_ff},
            {"dense_d_ff", info.dense_d_ff},
            {"shared_expert_d_ff", info.shared_d_ff},
            {"num_experts", s.num_experts},
            {"top_k", s.top_k},
            {"gate", s.gate == GateKind::kSoftmax ? "softmax" : "sigmoid"},
            {"norm_topk_prob", s.norm_topk_prob},
            {"rms_norm_eps", s.rms_norm_eps},
            {"files", info.files.size()},
            {"dtypes", dtypes},
            {"total_bytes", ck.total_bytes()},
            {"ranks", num_ranks},
            {"checkpoint_bytes_per_rank", read},
            {"weight_bytes_per_rank", held}};
}

std::string inspect_text(const Json& d) {
    std::ostringstream os;
    os << "path            " << d["path"].get<std::string>() << "\n"
       << "config          " << d["config"].get<std::string>() << "\n"
       << "family          " << d["family"].get<std::string>() << "\n"
       << "layers          " << d["num_layers"] << ":";
    for (const auto& run : d["layers"])
        os << " " << run["layers"].get<std::string>() << " " << run["kind"].get<std::string>();
    os << "\nd_model         " << d["d_model"] << "\n"
       << "d_ff            " << d["d_ff"] << " (dense " << d["dense_d_ff"] << ", shared expert "
       << d["shared_expert_d_ff"] << ")\n"
       << "experts         " << d["num_experts"] << ", top_k " << d["top_k"] << "\n"
       << "gate            " << d["gate"].get<std::string>() << ", norm_topk_prob "
       << (d["norm_topk_prob"].get<bool>() ? "true" : "false") << ", rms_norm_eps " << d["rms_norm_eps"] << "\n"
       << "dtypes          ";
    for (auto it = d["dtypes"].begin(); it != d["dtypes"].end(); ++it) os << it.key() << " x" << it.value() << " ";
    os << "\nfiles           " << d["files"] << ", " << d["total_bytes"] << " bytes of tensors\n"
       << "per rank (" << d["ranks"] << " ranks, contiguous placement):\n";
    for (size_t r = 0; r < d["checkpoint_bytes_per_rank"].size(); ++r)
        os << "  rank " << r << ": reads " << d["checkpoint_bytes_per_rank"][r] << " bytes, holds "
           << d["weight_bytes_per_rank"][r] << " bytes F32\n";
    return os.str();
}

int inspect_command(const mpi::Comm& world, const std::vector<std::string>& args) {
    po::options_description desc("options");
    desc.add_options()("help,h", "this help")("json", "print one JSON object instead of text")(
        "ranks", po::value<int>()->default_value(1), "ranks P to size the per-rank shards for (as mpirun -np P)")(
        "config", po::value<std::string>(), "epmoe config (model.* keys describe a lone .safetensors file)")(
        "set", po::value<std::vector<std::string>>()->composing(), "override a config key: a.b=value");
    po::options_description all;
    all.add(desc).add_options()("path", po::value<std::string>());
    po::positional_options_description positional;
    positional.add("path", 1);
    po::variables_map vm;
    std::string text;
    mpi::all_or_none(world, [&] {
        try {
            po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
            po::notify(vm);
        } catch (const po::error& e) {
            fail("epmoe inspect: ", e.what(), " (see epmoe inspect --help)");
        }
        if (vm.count("help")) return;
        if (!vm.count("path")) fail("epmoe inspect: give a checkpoint directory or .safetensors file");
        if (vm["ranks"].as<int>() < 1) fail("epmoe inspect: --ranks ", vm["ranks"].as<int>(), " must be >= 1");
        Json merged = default_config();
        if (vm.count("config"))
            merge_config(merged, read_config_file(vm["config"].as<std::string>()), vm["config"].as<std::string>());
        if (vm.count("set"))
            for (const auto& a : vm["set"].as<std::vector<std::string>>()) apply_set(merged, a);
        Checkpoint ck = Checkpoint::open(vm["path"].as<std::string>(), Config::from_json(merged).model);
        Json d = inspect_json(ck, vm["ranks"].as<int>());
        text = vm.count("json") ? d.dump(2) + "\n" : inspect_text(d);
    });
    if (world.rank() == 0) std::cout << (vm.count("help") ? usage(desc) : text);
    return 0;
}

}  // namespace epmoe
