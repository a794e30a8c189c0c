// SimGrid platforms for `epmoe simulate`: one <cluster> with a fat-tree, torus or dragonfly topology, or a
// user's platform file. Every node has ranks_per_node cores at the calibrated expert-GEMM rate.
#include "app/platform.hpp"

#include <cmath>
#include <fstream>
#include <regex>
#include <sstream>

#include "epmoe/base/error.hpp"
#include "epmoe/sim/sim.hpp"

namespace epmoe {
namespace {

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// SimGrid's topo_parameters for at least `nodes` nodes, and the node count it makes.
// fat-tree: two levels of k-port switches, full bisection (k leaves of L nodes... see docs/simulate.md);
// torus: three dimensions as near a cube as fits; dragonfly: groups of 2 chassis x R routers x 4
// nodes, R = 4 up to 128 nodes, then ceil(sqrt(nodes / 8)), never fewer routers a chassis than groups.
std::pair<std::string, int> topology(const std::string& kind, int nodes) {
    if (kind == "fat-tree") {
        int k = std::max(1, static_cast<int>(std::ceil(std::sqrt(static_cast<double>(nodes)))));
        int leaves = ceil_div(nodes, k);
        return {cat("2;", k, ",", leaves, ";1,", k, ";1,1"), k * leaves};
    }
    if (kind == "torus") {
        int x = std::max(1, static_cast<int>(std::ceil(std::cbrt(static_cast<double>(nodes)) - 1e-9)));
        int y = std::max(1, static_cast<int>(std::ceil(std::sqrt(static_cast<double>(ceil_div(nodes, x))) - 1e-9)));
        int z = ceil_div(nodes, x * y);
        return {cat(x, ",", y, ",", z), x * y * z};
    }
    // SimGrid routes to group g through router g of a group's first chassis (DragonflyZone::get_local_route),
    // so there are never more groups than routers a chassis: 4 routers up to 128 nodes, then sqrt(nodes / 8).
    const int routers = std::max(4, static_cast<int>(std::ceil(std::sqrt(nodes / 8.0) - 1e-9)));
    const int per_group = 2 * routers * 4;
    const int groups = std::max(1, ceil_div(nodes, per_group));
    return {cat(groups, ",1;2,1;", routers, ",1;4"), groups * per_group};
}

std::string topology_name(const std::string& kind) {
    return kind == "fat-tree" ? "FAT_TREE" : kind == "torus" ? "TORUS" : "DRAGONFLY";
}

// Host names of a platform file, in order: <host id=".."> and the hosts of each <cluster prefix radical suffix>.
std::vector<std::string> hosts_of_file(const std::string& path, const std::string& text) {
    std::vector<std::string> hosts;
    static const std::regex element(R"(<(host|cluster)\b([^>]*)>)");
    auto attr = [](const std::string& attrs, const std::string& name) {
        std::smatch m;
        std::regex re("\\b" + name + R"(\s*=\s*["']([^"']*)["'])");
        return std::regex_search(attrs, m, re) ? m[1].str() : std::string();
    };
    for (auto it = std::sregex_iterator(text.begin(), text.end(), element); it != std::sregex_iterator(); ++it) {
        const std::string attrs = (*it)[2].str();
        if ((*it)[1] == "host") {
            hosts.push_back(attr(attrs, "id"));
            continue;
        }
        std::istringstream radical(attr(attrs, "radical"));
        for (std::string part; std::getline(radical, part, ',');) {
            size_t dash = part.find('-');
            int lo = std::stoi(part.substr(0, dash)),
                hi = dash == std::string::npos ? lo : std::stoi(part.substr(dash + 1));
            for (int i = lo; i <= hi; ++i)
                hosts.push_back(attr(attrs, "prefix") + std::to_string(i) + attr(attrs, "suffix"));
        }
    }
    if (hosts.empty()) fail("simulate.platform = ", path, ": no <host> or <cluster> found in the file");
    return hosts;
}

}  // namespace

Json describe_platform(const SimulateConfig& s, int num_ranks) {
    const bool file = s.platform.size() > 4 && s.platform.substr(s.platform.size() - 4) == ".xml";
    Json d = {{"kind", file ? "file" : s.platform},
              {"file", "platform.xml"},
              {"hostfile", "hostfile"},
              {"ranks", num_ranks},
              {"ranks_per_node", s.ranks_per_node},
              {"nodes", ceil_div(num_ranks, s.ranks_per_node)},
              {"gflops_per_core", s.gflops_per_core}};
    if (file) {
        d["source"] = s.platform;
        return d;
    }
    auto [params, nodes] = topology(s.platform, ceil_div(num_ranks, s.ranks_per_node));
    d["topology"] = topology_name(s.platform);
    d["topo_parameters"] = params;
    d["nodes_in_topology"] = nodes;
    d["bandwidth"] = s.bandwidth;
    d["latency"] = s.latency;
    d["loopback_bandwidth"] = s.loopback_bandwidth;
    d["loopback_latency"] = s.loopback_latency;
    return d;
}

Json label_simulated(Json j, const Config& config, int num_ranks, bool summary) {
    if (!sim::simulated()) return j;
    j["simulated"] = true;
    if (!summary) return j;
    j["time_source"] =
        "simulated: SimGrid SMPI virtual seconds (expert GEMMs modelled at "
        "platform.gflops_per_core, host code timed and replayed, network modelled)";
    j["platform"] = describe_platform(config.simulate, num_ranks);
    return j;
}

Platform make_platform(const SimulateConfig& s, int num_ranks, double gflops) {
    Platform p;
    const int nodes = ceil_div(num_ranks, s.ranks_per_node);
    SimulateConfig resolved = s;
    resolved.gflops_per_core = gflops;
    p.describe = describe_platform(resolved, num_ranks);
    std::vector<std::string> hosts;
    if (p.describe["kind"] == "file") {
        std::ifstream in(s.platform);
        if (!in) fail("simulate.platform = ", s.platform, ": cannot read the platform file");
        std::ostringstream text;
        text << in.rdbuf();
        p.xml = text.str();
        hosts = hosts_of_file(s.platform, p.xml);
        if (static_cast<int>(hosts.size()) < nodes)
            fail("simulate.platform = ", s.platform, ": ", hosts.size(), " hosts, but ", num_ranks, " ranks at ",
                 s.ranks_per_node, " per node need ", nodes);
    } else {
        auto [params, total] = topology(s.platform, nodes);
        std::ostringstream xml;
        xml << "<?xml version='1.0'?>\n<!DOCTYPE platform SYSTEM \"https://simgrid.org/simgrid.dtd\">\n"
            << "<!-- epmoe simulate: " << s.platform << ", " << nodes << " nodes used of " << total << " -->\n"
            << "<platform version=\"4.1\">\n  <zone id=\"world\" routing=\"Full\">\n"
            << "    <cluster id=\"cluster\" prefix=\"node-\" radical=\"0-" << total - 1 << "\" suffix=\"\""
            << " speed=\"" << gflops << "Gf\" core=\"" << s.ranks_per_node << "\" bw=\"" << s.bandwidth << "\" lat=\""
            << s.latency << "\"\n             loopback_bw=\"" << s.loopback_bandwidth << "\" loopback_lat=\""
            << s.loopback_latency << "\" topology=\"" << topology_name(s.platform) << "\" topo_parameters=\"" << params
            << "\"/>\n  </zone>\n</platform>\n";
        p.xml = xml.str();
        for (int n = 0; n < nodes; ++n) hosts.push_back(cat("node-", n));
    }
    for (int r = 0; r < num_ranks; ++r) p.hosts.push_back(hosts[r / s.ranks_per_node]);
    return p;
}

}  // namespace epmoe
