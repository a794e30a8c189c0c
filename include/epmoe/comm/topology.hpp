// What hwloc sees of this host: packages, cores, PUs, NUMA nodes, caches, and this process's binding.
// No MPI here; `epmoe info` gathers these over ranks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace epmoe {

// One cache level: the size of one instance and how many instances the host has.
struct CacheLevel {
    int64_t size_bytes = 0;  // bytes per instance; 0 if hwloc found none at this level
    int count = 0;           // instances on the host
};

// Object counts of the host's hwloc topology (only the PUs this process is allowed to use).
struct TopologySummary {
    int packages = 0;
    int cores = 0;
    int pus = 0;  // hardware threads
    int numa_nodes = 0;
    CacheLevel l1d;  // level-1 data (or unified) caches
    CacheLevel l2;
    CacheLevel l3;
};

// Loads the hwloc topology of this host, or of an hwloc synthetic description when `synthetic` is not
// empty (e.g. "pack:2 core:4 pu:2", used by tests). Fails with Error if hwloc cannot load it.
TopologySummary topology_summary(const std::string& synthetic = "");

// This process's CPU binding (hwloc_get_cpubind) as an hwloc list string, e.g. "0-3,8"; PU OS indexes.
std::string cpu_binding();

// resources.bind = core: binds this process and all its threads (BLAS and OpenMP pools included; threads
// started later inherit it) to `threads` whole cores. Local rank r of local_ranks on this host gets cores
// [r * threads, (r + 1) * threads), wrapping round when there are more ranks x threads than cores.
// Returns the cores bound, e.g. "cores 2-3 (PUs 2-3)". Fails with Error if hwloc cannot bind.
std::string bind_to_cores(int local_rank, int local_ranks, int threads);

// PUs in the union of hwloc list strings such as cpu_binding() returns ("0-3,8"); unparsable lists count 0.
int count_pus(const std::vector<std::string>& lists);

}  // namespace epmoe
