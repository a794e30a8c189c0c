#include "epmoe/comm/topology.hpp"

#include <hwloc.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "epmoe/base/error.hpp"

namespace epmoe {
namespace {

// RAII owner of a loaded hwloc topology.
class Topology {
public:
    explicit Topology(const std::string& synthetic) {
        if (hwloc_topology_init(&topo_) != 0) fail("hwloc: cannot initialise a topology");
        if (!synthetic.empty() && hwloc_topology_set_synthetic(topo_, synthetic.c_str()) != 0) {
            hwloc_topology_destroy(topo_);
            fail("hwloc: bad synthetic topology '", synthetic, "'");
        }
        if (hwloc_topology_load(topo_) != 0) {
            hwloc_topology_destroy(topo_);
            fail("hwloc: cannot load the topology of this host");
        }
    }
    ~Topology() { hwloc_topology_destroy(topo_); }
    Topology(const Topology&) = delete;
    Topology& operator=(const Topology&) = delete;
    hwloc_topology_t get() const { return topo_; }

private:
    hwloc_topology_t topo_ = nullptr;
};

int count_of(hwloc_topology_t topo, hwloc_obj_type_t type) {
    int n = hwloc_get_nbobjs_by_type(topo, type);
    return n < 0 ? 0 : n;  // -1: the type sits at several depths (does not happen for these types)
}

CacheLevel cache_of(hwloc_topology_t topo, hwloc_obj_type_t type) {
    CacheLevel level;
    level.count = count_of(topo, type);
    hwloc_obj_t first = hwloc_get_obj_by_type(topo, type, 0);
    if (first != nullptr && first->attr != nullptr) level.size_bytes = static_cast<int64_t>(first->attr->cache.size);
    return level;
}

}  // namespace

TopologySummary topology_summary(const std::string& synthetic) {
    Topology topo(synthetic);
    hwloc_topology_t t = topo.get();
    TopologySummary s;
    s.packages = count_of(t, HWLOC_OBJ_PACKAGE);
    s.cores = count_of(t, HWLOC_OBJ_CORE);
    s.pus = count_of(t, HWLOC_OBJ_PU);
    s.numa_nodes = count_of(t, HWLOC_OBJ_NUMANODE);
    s.l1d = cache_of(t, HWLOC_OBJ_L1CACHE);  // hwloc 2 keeps instruction caches apart (L1ICACHE)
    s.l2 = cache_of(t, HWLOC_OBJ_L2CACHE);
    s.l3 = cache_of(t, HWLOC_OBJ_L3CACHE);
    return s;
}

std::string cpu_binding() {
    Topology topo("");
    std::unique_ptr<hwloc_bitmap_s, void (*)(hwloc_bitmap_t)> set(hwloc_bitmap_alloc(), hwloc_bitmap_free);
    if (!set) fail("hwloc: out of memory");
    if (hwloc_get_cpubind(topo.get(), set.get(), HWLOC_CPUBIND_PROCESS) != 0) return "unknown";
    char* text = nullptr;
    if (hwloc_bitmap_list_asprintf(&text, set.get()) < 0 || text == nullptr) return "unknown";
    std::string out(text);
    std::free(text);
    return out;
}

std::string bind_to_cores(int local_rank, int local_ranks, int threads) {
    Topology topo("");
    hwloc_topology_t t = topo.get();
    const int cores = count_of(t, HWLOC_OBJ_CORE);
    if (cores == 0) fail("resources.bind = core: hwloc sees no cores on this host");
    std::unique_ptr<hwloc_bitmap_s, void (*)(hwloc_bitmap_t)> set(hwloc_bitmap_alloc(), hwloc_bitmap_free);
    if (!set) fail("hwloc: out of memory");
    const int first = (local_rank * threads) % cores;
    std::string core_list;
    for (int j = 0; j < threads && j < cores; ++j) {
        hwloc_obj_t core = hwloc_get_obj_by_type(t, HWLOC_OBJ_CORE, (first + j) % cores);
        hwloc_bitmap_or(set.get(), set.get(), core->cpuset);
        core_list += cat(j ? "," : "", (first + j) % cores);
    }
    if (hwloc_set_cpubind(t, set.get(), HWLOC_CPUBIND_PROCESS) != 0)
        fail("resources.bind = core: hwloc cannot bind local rank ", local_rank, " to core(s) ", core_list, ": ",
             std::strerror(errno));
    char* pus = nullptr;
    std::string pu_text = hwloc_bitmap_list_asprintf(&pus, set.get()) >= 0 && pus ? pus : "?";
    std::free(pus);
    std::string out = cat("core(s) ", core_list, " (PUs ", pu_text, ")");
    if (local_ranks * threads > cores)
        out += cat(", oversubscribed: ", local_ranks, " ranks x ", threads, " threads on ", cores, " cores");
    return out;
}

int count_pus(const std::vector<std::string>& lists) {
    std::unique_ptr<hwloc_bitmap_s, void (*)(hwloc_bitmap_t)> all(hwloc_bitmap_alloc(), hwloc_bitmap_free);
    std::unique_ptr<hwloc_bitmap_s, void (*)(hwloc_bitmap_t)> one(hwloc_bitmap_alloc(), hwloc_bitmap_free);
    for (const std::string& list : lists)
        if (hwloc_bitmap_list_sscanf(one.get(), list.c_str()) == 0) hwloc_bitmap_or(all.get(), all.get(), one.get());
    const int n = hwloc_bitmap_weight(all.get());
    return n < 0 ? 0 : n;
}

}  // namespace epmoe
