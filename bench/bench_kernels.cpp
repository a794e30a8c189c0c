// Single-process kernels of one MoE layer, each beside the limit it is measured against in the same run:
//   Peak            the measured FP32 FMA peak of one core (peak_flops.cpp)
//   AmxPeak/A/B     the AMX BF16 peak of one core: epmoe's 2x2-tile micro-kernel with its operands in tiles
//                   (0/0) or its A and B tiles streamed from buffers of A and B KiB (16: L1, 1024: L2)
//   SgemmBare/M     the two bare cblas_sgemm calls of one expert (W1|W3 fused, then W2), no SiLU
//   SgemmUnfused/M  three bare cblas_sgemm (W1, W3, W2 apart): what fusing W1|W3 saves
//   Kernel/<name>/M epmoe's MlpKernel (GEMMs + fused SiLU-multiply), per backend/dtype this build has;
//                   onednn/fp32-in-place: the FP32 kernel on the weights as loaded (training's; packed at load
//                   is the default where oneDNN's brgemm runs)
//   Memcpy/T        memcpy of the bytes pack + combine move, (2 + 2k) d_model 4 bytes a token
//   Pack/T          epmoe's assign_rows and pack_rows: the copy of each row from x into its send row, which
//                   MPI makes itself inside the token exchange where ranks block (a derived datatype)
//   Combine/T, PackCombine/T  epmoe's combine_tokens; the two in turn on T tokens
//   GateTopk/T      RMSNorm + gate GEMV + softmax top-k on T tokens
// Shape: d_model 1024, d_ff 3584, 8 experts, top-2 (issue 9's points); one BLAS thread unless
// EPMOE_BENCH_THREADS says otherwise. Each benchmark checks its output once (#wrong counter).
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include "bench_routing.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/moe/dispatch.hpp"
#include "epmoe/moe/router.hpp"
#include "epmoe/ops/gate.hpp"
#include "epmoe/ops/mlp_kernel.hpp"
#include "epmoe/ops/norm.hpp"
#include "epmoe/ops/swiglu.hpp"
#include "peak_flops.hpp"

namespace {

using namespace epmoe;

constexpr int kDModel = 1024, kDFf = 3584, kExperts = 8, kTopK = 2, kRanks = 2;
int g_wrong = 0;  // benchmarks whose self-check failed; main's exit code

void set_wrong(benchmark::State& state, bool wrong) {
    state.counters["wrong"] = wrong ? 1 : 0;
    g_wrong += wrong ? 1 : 0;
}

std::vector<float> random_vector(size_t n, float scale, unsigned seed) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> u(-scale, scale);
    std::vector<float> v(n);
    for (float& x : v) x = u(gen);
    return v;
}

// One expert's FP32 weights: w13 [2 d_ff, d_model], w2 [d_model, d_ff].
ExpertWeights make_weights() {
    ExpertWeights w;
    w.w13 = random_vector(2ull * kDFf * kDModel, std::sqrt(3.0f / kDModel), 1);
    w.w2 = random_vector(1ull * kDModel * kDFf, 0.5f * std::sqrt(3.0f / kDFf), 2);
    return w;
}

void set_flops(benchmark::State& state, double flops_per_iteration) {
    state.counters["GFLOPS"] =
        benchmark::Counter(flops_per_iteration * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void Peak(benchmark::State& state) {
    std::string isa;
    double flops = 0;
    for (auto _ : state) flops = epmoe::bench::fma_loop(2'000'000, isa);
    set_flops(state, flops);
    state.SetLabel(isa);
}

// Args: KiB of the A and of the B tiles the loop streams (0, 0: tiles only).
void AmxPeak(benchmark::State& state) {
    std::string detail;
    if (epmoe::bench::amx_loop(1, 0, 0, detail) == 0) {
        state.SkipWithError(("no AMX: " + detail).c_str());
        return;
    }
    const size_t a_bytes = static_cast<size_t>(state.range(0)) << 10, b_bytes = static_cast<size_t>(state.range(1))
                                                                                << 10;
    double flops = 0;
    for (auto _ : state) flops = epmoe::bench::amx_loop(200'000, a_bytes, b_bytes, detail);
    set_flops(state, flops);
    state.SetLabel(detail);
}

void SgemmBare(benchmark::State& state) {
    const int m = static_cast<int>(state.range(0));
    const ExpertWeights w = make_weights();
    const std::vector<float> x = random_vector(1ull * m * kDModel, 1.0f, 3);
    std::vector<float> h(2ull * m * kDFf), y(1ull * m * kDModel);
    for (auto _ : state) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, 2 * kDFf, kDModel, 1.0f, x.data(), kDModel,
                    w.w13.data(), kDModel, 0.0f, h.data(), 2 * kDFf);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, kDModel, kDFf, 1.0f, h.data(), 2 * kDFf, w.w2.data(),
                    kDFf, 0.0f, y.data(), kDModel);
        benchmark::DoNotOptimize(y.data());
    }
    set_flops(state, 6.0 * m * kDModel * kDFf);
}

void SgemmUnfused(benchmark::State& state) {
    const int m = static_cast<int>(state.range(0));
    const ExpertWeights w = make_weights();
    const std::vector<float> x = random_vector(1ull * m * kDModel, 1.0f, 3);
    std::vector<float> h1(1ull * m * kDFf), h3(1ull * m * kDFf), y(1ull * m * kDModel);
    const float* w3 = w.w13.data() + 1ull * kDFf * kDModel;
    for (auto _ : state) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, kDFf, kDModel, 1.0f, x.data(), kDModel, w.w13.data(),
                    kDModel, 0.0f, h1.data(), kDFf);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, kDFf, kDModel, 1.0f, x.data(), kDModel, w3, kDModel,
                    0.0f, h3.data(), kDFf);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, kDModel, kDFf, 1.0f, h1.data(), kDFf, w.w2.data(), kDFf,
                    0.0f, y.data(), kDModel);
        benchmark::DoNotOptimize(y.data());
    }
    set_flops(state, 6.0 * m * kDModel * kDFf);
}

// Plain-loop SwiGLU of one row in double, to check a kernel's output.
double max_rel_error(const ExpertWeights& w, const std::vector<float>& x, const std::vector<float>& y, int rows) {
    double worst = 0;
    std::vector<double> act(kDFf);
    for (int t = 0; t < rows; t += std::max(1, rows / 4)) {
        const float* xt = &x[1ull * t * kDModel];
        for (int j = 0; j < kDFf; ++j) {
            double a = 0, b = 0;
            for (int i = 0; i < kDModel; ++i) {
                a += static_cast<double>(w.w13[1ull * j * kDModel + i]) * xt[i];
                b += static_cast<double>(w.w13[1ull * (kDFf + j) * kDModel + i]) * xt[i];
            }
            act[j] = a / (1.0 + std::exp(-a)) * b;
        }
        double num = 0, den = 0;
        for (int i = 0; i < kDModel; ++i) {
            double ref = 0;
            for (int j = 0; j < kDFf; ++j) ref += static_cast<double>(w.w2[1ull * i * kDFf + j]) * act[j];
            num += (y[1ull * t * kDModel + i] - ref) * (y[1ull * t * kDModel + i] - ref);
            den += ref * ref;
        }
        worst = std::max(worst, std::sqrt(num / den));
    }
    return worst;
}

void Kernel(benchmark::State& state, std::string backend, std::string dtype, bool in_place) {
    const int m = static_cast<int>(state.range(0));
    std::shared_ptr<const MlpKernel> kernel;
    try {
        kernel = make_mlp_kernel(backend, dtype, in_place);
    } catch (const Error& e) {
        state.SkipWithError(e.what());
        for (auto _ : state) {
        }
        return;
    }
    const ExpertWeights reference = make_weights();
    ExpertWeights w = reference;
    kernel->prepare(w, kDModel, kDFf);
    const std::vector<float> x = random_vector(1ull * m * kDModel, 1.0f, 3);
    std::vector<float> y(x.size()), scratch;
    for (auto _ : state) {
        kernel->forward(w, kDModel, kDFf, x, y, scratch);
        benchmark::DoNotOptimize(y.data());
    }
    set_flops(state, 6.0 * m * kDModel * kDFf);
    const double err = max_rel_error(reference, x, y, m);
    state.counters["rel_err"] = err;
    set_wrong(state, err > (dtype == "bf16" ? 2e-2 : 1e-5));
    state.SetLabel(kernel->name());
}

void set_bytes(benchmark::State& state, int64_t tokens) {
    state.SetBytesProcessed(state.iterations() * tokens * (2 + 2 * kTopK) * kDModel *
                            static_cast<int64_t>(sizeof(float)));
}

void Memcpy(benchmark::State& state) {
    const int64_t tokens = state.range(0);
    const size_t n = static_cast<size_t>(tokens) * (1 + kTopK) * kDModel;  // read + written = (2 + 2k) d 4 bytes
    std::vector<float> src = random_vector(n, 1.0f, 4), dst(n);
    for (auto _ : state) {
        std::memcpy(dst.data(), src.data(), n * sizeof(float));
        benchmark::DoNotOptimize(dst.data());
    }
    set_bytes(state, tokens);
}

struct PackFixture {
    explicit PackFixture(int64_t tokens)
        : placement(Placement::make("contiguous", kExperts, kRanks)),
          routing(bench::top2_routing(tokens, kExperts, false, 7)),
          kept(tokens * kTopK, 1),
          x(random_vector(1ull * tokens * kDModel, 1.0f, 5)),
          out(x.size()) {
        result.expert_load.assign(kExperts, 0);
    }
    Placement placement;
    Routing routing;
    std::vector<uint8_t> kept;
    std::vector<float> x, out;
    DispatchBuffers buf;
    LayerResult result;
};

// assign_rows, then pack_rows (all rows go to send: self = -1).
void pack(PackFixture& f) {
    assign_rows(f.placement, f.routing, f.kept, kDModel, 0, f.buf);
    pack_rows(f.x, kDModel, kTopK, f.buf);
}

void Pack(benchmark::State& state) {
    PackFixture f(state.range(0));
    for (auto _ : state) {
        pack(f);
        benchmark::DoNotOptimize(f.buf.send.data());
    }
    state.SetBytesProcessed(state.iterations() * state.range(0) * (1 + kTopK) * kDModel * 4);
}

void Combine(benchmark::State& state) {
    PackFixture f(state.range(0));
    pack(f);
    for (auto _ : state) {
        f.result.dropped = 0;
        combine_tokens(f.routing, f.buf.send, f.buf.own, f.buf.slot_row, kDModel, f.out, f.result);
        benchmark::DoNotOptimize(f.out.data());
    }
    state.SetBytesProcessed(state.iterations() * state.range(0) * (1 + kTopK) * kDModel * 4);
}

// pack then combine with the identity expert: out must equal x (weights sum to 1).
void PackCombine(benchmark::State& state) {
    PackFixture f(state.range(0));
    for (auto _ : state) {
        pack(f);
        f.result.dropped = 0;
        combine_tokens(f.routing, f.buf.send, f.buf.own, f.buf.slot_row, kDModel, f.out, f.result);
        benchmark::DoNotOptimize(f.out.data());
    }
    set_bytes(state, state.range(0));
    double worst = 0;
    for (size_t i = 0; i < f.x.size(); ++i) worst = std::max(worst, static_cast<double>(std::fabs(f.out[i] - f.x[i])));
    set_wrong(state, worst > 1e-5);
}

void GateTopk(benchmark::State& state) {
    const int64_t tokens = state.range(0);
    const std::vector<float> x = random_vector(tokens * kDModel, 1.0f, 6), g(kDModel, 1.0f);
    const std::vector<float> gate = random_vector(1ull * kExperts * kDModel, 2.0f * std::sqrt(3.0f / kDModel), 7);
    std::vector<float> norm(x.size()), logits(tokens * kExperts);
    Routing r;
    for (auto _ : state) {
        rms_norm(x, g, 1e-6, norm);
        gate_logits(norm, gate, kDModel, kExperts, logits);
        r = route(logits, kExperts, kTopK, {}, GateKind::kSoftmax, true);
        benchmark::DoNotOptimize(r.expert_ids.data());
    }
    state.SetItemsProcessed(state.iterations() * tokens);
    int wrong = 0;
    for (int64_t t = 0; t < tokens; ++t) {  // the first choice has the largest logit
        const float* row = &logits[t * kExperts];
        wrong += row[r.expert_ids[t * kTopK]] < *std::max_element(row, row + kExperts);
    }
    set_wrong(state, wrong > 0);
}

}  // namespace

int main(int argc, char** argv) {
    const char* threads = std::getenv("EPMOE_BENCH_THREADS");
    openblas_set_num_threads(threads ? std::atoi(threads) : 1);
    benchmark::RegisterBenchmark("Peak", Peak)->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark("AmxPeak", AmxPeak)
        ->Args({0, 0})
        ->Args({16, 16})
        ->Args({1024, 16})
        ->Args({1024, 1024})
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    // 128 = 2048 tokens on one rank, top-2 of 32 experts; 1024 = 2048 tokens a rank on 2 ranks, top-2 of 8
    const std::vector<int64_t> rows = {32, 64, 128, 256, 1024};
    for (auto* b : {benchmark::RegisterBenchmark("SgemmBare", SgemmBare),
                    benchmark::RegisterBenchmark("SgemmUnfused", SgemmUnfused)})
        for (int64_t m : rows) b->Arg(m)->Unit(benchmark::kMillisecond)->UseRealTime();
    for (const auto& [backend, dtype] : std::vector<std::pair<std::string, std::string>>{{"openblas", "fp32"},
                                                                                         {"onednn", "fp32"},
                                                                                         {"onednn", "fp32-in-place"},
                                                                                         {"onednn", "bf16"},
                                                                                         {"amx", "bf16"}}) {
        const bool in_place = dtype == "fp32-in-place";  // the runtime-M matmul training runs, weights as loaded
        auto* b = benchmark::RegisterBenchmark(("Kernel/" + backend + "/" + dtype).c_str(), Kernel, backend,
                                               in_place ? "fp32" : dtype, in_place);
        for (int64_t m : rows) b->Arg(m)->Unit(benchmark::kMillisecond)->UseRealTime();
    }
    for (auto fn : {Memcpy, Pack, Combine, PackCombine}) {
        const char* name = fn == Memcpy ? "Memcpy" : fn == Pack ? "Pack" : fn == Combine ? "Combine" : "PackCombine";
        benchmark::RegisterBenchmark(name, fn)->Arg(64)->Arg(2048)->Unit(benchmark::kMicrosecond)->UseRealTime();
    }
    benchmark::RegisterBenchmark("GateTopk", GateTopk)
        ->Arg(64)
        ->Arg(2048)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
    benchmark::Initialize(&argc, argv);
    const size_t ran = benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    if (ran == 0) {
        std::fprintf(stderr, "bench_kernels: no benchmark matched the filter\n");
        return 2;
    }
    if (g_wrong) std::fprintf(stderr, "bench_kernels: %d benchmark(s) computed a wrong result\n", g_wrong);
    return g_wrong ? 1 : 0;
}
