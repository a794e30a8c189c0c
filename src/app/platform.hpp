// The simulated cluster of `epmoe simulate`: the SimGrid platform the simulated ranks run on, and the labels
// that mark results of simulated ranks as such (`run` writes them when sim::simulated()).
#pragma once

#include <string>
#include <vector>

#include "epmoe/base/config.hpp"
#include "epmoe/base/json.hpp"

namespace epmoe {

// A simulated cluster: SimGrid platform XML and the host of every rank.
struct Platform {
    std::string xml;                 // the platform file's text
    std::vector<std::string> hosts;  // [num_ranks] host of each rank, in rank order (the hostfile)
    Json describe;                   // summary.json's "platform"
};

// The platform of s for num_ranks ranks whose hosts compute at gflops GFLOP/s per core. Generated for
// fat-tree, torus and dragonfly (s.ranks_per_node cores a node, s.bandwidth/s.latency on every link);
// read from s.platform when it is a FILE.xml (its <host> ids and <cluster> hosts, in file order).
// Fails naming the file or key.
Platform make_platform(const SimulateConfig& s, int num_ranks, double gflops);

// summary.json's "platform" as the simulated ranks see it: the simulate.* keys and the node count.
Json describe_platform(const SimulateConfig& s, int num_ranks);

// Labels a metrics.jsonl line or summary.json of simulated ranks (sim::simulated()): "simulated": true, and
// for the summary the platform and what its times mean. Returns j unchanged in the ordinary build.
Json label_simulated(Json j, const Config& config, int num_ranks, bool summary);

}  // namespace epmoe
