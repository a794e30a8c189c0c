// bf16_support() (mlp_kernel.hpp): the CPU's BF16 instructions (CPUID), whether the OS enabled their state
// (XCR0), and, for AMX, Linux's per-process permission for the 8 KiB tile data state, which must be asked
// for (arch_prctl ARCH_REQ_XCOMP_PERM) before the first tile instruction (else SIGILL).
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "epmoe/base/error.hpp"
#include "epmoe/ops/mlp_kernel.hpp"

namespace epmoe {
namespace {

constexpr int kArchGetXcompPerm = 0x1022, kArchReqXcompPerm = 0x1023;  // <asm/prctl.h>
constexpr int kXfeatureTileData = 18;                                  // XTILEDATA in XCR0 and the permission

uint64_t xcr0() {
    uint32_t lo = 0, hi = 0;
    asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t{hi} << 32) | lo;
}

// Asks Linux for the tile data state; empty on success, else why not.
std::string request_tile_permission() {
    if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureTileData) != 0)
        return cat("arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) refused: ", errno_text(errno));
    unsigned long features = 0;
    if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &features) != 0 || !(features >> kXfeatureTileData & 1))
        return "arch_prctl(ARCH_GET_XCOMP_PERM) does not list XTILEDATA after the request";
    return "";
}

Bf16Support probe() {
    Bf16Support s;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        s.amx_detail = "CPUID leaf 7 missing";
        return s;
    }
    const bool avx512f = b >> 16 & 1, amx_bf16 = d >> 22 & 1, amx_tile = d >> 24 & 1;
    unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
    const bool avx512bf16 = __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1) && (a1 >> 5 & 1);
    unsigned a0 = 0, b0 = 0, c0 = 0, d0 = 0;
    const bool osxsave = __get_cpuid(1, &a0, &b0, &c0, &d0) && (c0 >> 27 & 1);
    const uint64_t x = osxsave ? xcr0() : 0;
    s.avx512_bf16 = avx512f && avx512bf16 && (x & 0xe6) == 0xe6;  // SSE, AVX, opmask, ZMM state
    s.amx_bf16 = amx_tile && amx_bf16 && (x >> 17 & 3) == 3;      // TILECFG and TILEDATA state
    if (!amx_tile || !amx_bf16)
        s.amx_detail = "the CPU has no AMX-BF16";
    else if (!s.amx_bf16)
        s.amx_detail = "the OS did not enable the AMX tile state (XCR0)";
    else
        s.amx_detail = request_tile_permission();
    s.amx_permitted = s.amx_bf16 && s.amx_detail.empty();
    return s;
}

}  // namespace

const Bf16Support& bf16_support() {
    static const Bf16Support support = probe();
    return support;
}

}  // namespace epmoe
