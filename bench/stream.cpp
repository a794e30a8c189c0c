// Memory bandwidth of this machine as a decode step sees it: a STREAM-like copy (a[i] = b[i] over arrays far
// larger than the caches) by 1 to --threads threads at once, each on its own arrays, as ranks of one host read
// their experts' weights at once. Prints one JSON line: GB/s (bytes read + written, 1e9) per thread count,
// median/min/max over --reps, and checks the copy (wrong = 0).
// Usage: stream [--mib 256] [--threads 2] [--reps 7]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

// One thread's arrays: src holds i, dst is overwritten by each copy.
struct Arrays {
    std::vector<double> src, dst;
    explicit Arrays(size_t n) : src(n), dst(n) {
        for (size_t i = 0; i < n; ++i) src[i] = static_cast<double>(i);
    }
};

// Seconds for `threads` threads to copy their arrays once, all started together.
double timed_copy(std::vector<Arrays>& arrays, int threads) {
    using Clock = std::chrono::steady_clock;
    std::vector<std::thread> pool;
    const auto start = Clock::now();
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&arrays, t] {
            Arrays& a = arrays[t];
            std::memcpy(a.dst.data(), a.src.data(), a.src.size() * sizeof(double));
        });
    for (auto& th : pool) th.join();
    return std::chrono::duration<double>(Clock::now() - start).count();
}

long arg(int argc, char** argv, const char* name, long fallback) {
    for (int i = 1; i + 1 < argc; ++i)
        if (std::string(argv[i]) == name) return std::atol(argv[i + 1]);
    return fallback;
}

}  // namespace

int main(int argc, char** argv) {
    const size_t n = static_cast<size_t>(arg(argc, argv, "--mib", 256)) * 1024 * 1024 / sizeof(double);
    const int max_threads = static_cast<int>(arg(argc, argv, "--threads", 2));
    const int reps = static_cast<int>(arg(argc, argv, "--reps", 7));
    std::vector<Arrays> arrays;
    for (int t = 0; t < max_threads; ++t) arrays.emplace_back(n);
    std::printf("{\"bench\": \"stream_copy\", \"mib_per_array\": %zu, \"points\": [", n * sizeof(double) >> 20);
    int wrong = 0;
    for (int threads = 1; threads <= max_threads; ++threads) {
        timed_copy(arrays, threads);  // first touch of dst
        std::vector<double> gbs;
        for (int r = 0; r < reps; ++r) gbs.push_back(2.0 * n * sizeof(double) * threads / timed_copy(arrays, threads) / 1e9);
        std::sort(gbs.begin(), gbs.end());
        for (int t = 0; t < threads; ++t) wrong += arrays[t].dst[n - 1] != static_cast<double>(n - 1);
        std::printf("%s{\"threads\": %d, \"gb_per_s\": {\"median\": %.3f, \"min\": %.3f, \"max\": %.3f}}",
                    threads > 1 ? ", " : "", threads, gbs[gbs.size() / 2], gbs.front(), gbs.back());
    }
    std::printf("], \"wrong\": %d}\n", wrong);
    return wrong ? 1 : 0;
}
