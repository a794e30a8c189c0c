// hwloc topology summary on a synthetic machine, and this process's binding against sched_getaffinity.
#include <gtest/gtest.h>
#include <sched.h>

#include <sstream>

#include "epmoe/base/error.hpp"
#include "epmoe/comm/topology.hpp"

namespace epmoe {
namespace {

TEST(Topology, SyntheticTwoSocketCounts) {
    TopologySummary s =
        topology_summary("pack:2 [numa] l3:1(size=33554432) core:4 l2:1(size=1048576) l1d:1(size=49152) pu:2");
    EXPECT_EQ(s.packages, 2);
    EXPECT_EQ(s.numa_nodes, 2);
    EXPECT_EQ(s.cores, 8);
    EXPECT_EQ(s.pus, 16);
    EXPECT_EQ(s.l3.count, 2);
    EXPECT_EQ(s.l3.size_bytes, 33554432);
    EXPECT_EQ(s.l2.count, 8);
    EXPECT_EQ(s.l2.size_bytes, 1048576);
    EXPECT_EQ(s.l1d.count, 8);
    EXPECT_EQ(s.l1d.size_bytes, 49152);
}

TEST(Topology, BadSyntheticIsAnError) { EXPECT_THROW(topology_summary("pack:two"), Error); }

TEST(Topology, ThisHostIsConsistent) {
    TopologySummary s = topology_summary();
    EXPECT_GE(s.packages, 1);
    EXPECT_GE(s.cores, s.packages);
    EXPECT_GE(s.pus, s.cores);
    EXPECT_GE(s.numa_nodes, 1);
}

// Counts the CPUs of an hwloc list string such as "0-3,8".
int count_list(const std::string& list) {
    int n = 0;
    std::istringstream in(list);
    for (std::string part; std::getline(in, part, ',');) {
        size_t dash = part.find('-');
        n += dash == std::string::npos ? 1 : std::stoi(part.substr(dash + 1)) - std::stoi(part.substr(0, dash)) + 1;
    }
    return n;
}

TEST(Topology, BindingMatchesAffinity) {
    std::string binding = cpu_binding();
    ASSERT_NE(binding, "unknown");
    cpu_set_t set;
    CPU_ZERO(&set);
    ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
    EXPECT_EQ(count_list(binding), CPU_COUNT(&set)) << binding;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
        if (CPU_ISSET(cpu, &set)) {
            EXPECT_NE(binding.find(std::to_string(cpu)), std::string::npos) << binding;
            break;
        }
}

// The union of local ranks' bindings decides resources.mpi_wait = auto (run.cpp).
TEST(Topology, CountPusUnionsLists) {
    EXPECT_EQ(count_pus({"0-3", "2-5,8"}), 7);
    EXPECT_EQ(count_pus({"1", "1", "1"}), 1);
    EXPECT_EQ(count_pus({}), 0);
    EXPECT_EQ(count_pus({cpu_binding()}), count_list(cpu_binding()));
}

}  // namespace
}  // namespace epmoe
