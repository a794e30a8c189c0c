// Every MlpKernel (openblas/fp32, onednn/fp32, onednn/bf16) against a plain double-precision loop, the
// BF16 weight memory, and the backend/dtype choice (auto, bad pairs).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "../../reference/moe_reference.hpp"
#include "epmoe/base/config.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/model/synthetic.hpp"
#include "epmoe/ops/mlp_kernel.hpp"
#include "epmoe/ops/swiglu.hpp"

namespace epmoe {
namespace {

float round_bf16(float f) {  // round to nearest even, as the kernel does
    uint32_t u = std::bit_cast<uint32_t>(f);
    u += 0x7fffu + ((u >> 16) & 1u);
    return std::bit_cast<float>(u & 0xffff0000u);
}

// y = W2 · (silu(W1 · x) ⊙ (W3 · x)) in double; with bf16, x, the weights and W2's input are first
// rounded to BF16 (what the BF16 kernel computes, exactly, up to FP32 summation order).
std::vector<double> reference_mlp(const std::vector<float>& w13, const std::vector<float>& w2, int d, int f,
                                  const std::vector<float>& x, bool bf16) {
    auto r = [&](float v) { return bf16 ? double(round_bf16(v)) : double(v); };
    const int n = static_cast<int>(x.size()) / d;
    std::vector<double> y(x.size());
    for (int t = 0; t < n; ++t) {
        std::vector<double> act(f);
        for (int j = 0; j < f; ++j) {
            double a = 0, b = 0;
            for (int i = 0; i < d; ++i) {
                a += r(w13[j * d + i]) * r(x[t * d + i]);
                b += r(w13[(f + j) * d + i]) * r(x[t * d + i]);
            }
            act[j] = a / (1 + std::exp(-a)) * b;
            if (bf16) act[j] = round_bf16(static_cast<float>(static_cast<float>(a / (1 + std::exp(-a))) * b));
        }
        for (int i = 0; i < d; ++i) {
            double s = 0;
            for (int j = 0; j < f; ++j) s += r(w2[i * f + j]) * act[j];
            y[t * d + i] = s;
        }
    }
    return y;
}

// FP32 weights of a d x f MLP, as loaded: scale times a sine (W1|W3) and a cosine (W2) of the index.
ExpertWeights wave_weights(int d, int f, float scale) {
    ExpertWeights w;
    w.w13.resize(2ull * f * d), w.w2.resize(1ull * d * f);
    for (size_t i = 0; i < w.w13.size(); ++i) w.w13[i] = scale * std::sin(0.37f * i);
    for (size_t i = 0; i < w.w2.size(); ++i) w.w2[i] = scale * std::cos(0.23f * i);
    return w;
}

struct Case {
    const char* backend;
    const char* dtype;
};

class KernelTest : public ::testing::TestWithParam<Case> {};

// Weights from the synthetic model (FP32, kept for the reference), prepared for the kernel under test.
TEST_P(KernelTest, MatchesPlainLoop) {
    const Case c = GetParam();
    const bool bf16 = std::string(c.dtype) == "bf16";
    std::shared_ptr<const MlpKernel> kernel = make_mlp_kernel(c.backend, c.dtype);
    EXPECT_EQ(kernel->name(), std::string(c.backend) + "/" + c.dtype);
    EXPECT_FALSE(kernel->implementation().empty());
    for (auto [d, f] : {std::pair{20, 36}, std::pair{64, 176}}) {
        ModelShape shape;
        shape.num_layers = 1, shape.d_model = d, shape.d_ff = f, shape.num_experts = 1, shape.top_k = 1;
        Model fp32 = make_synthetic_model(
            shape, 3, [](int, int) { return true; }, make_mlp_kernel("openblas", "fp32"));
        const ExpertWeights& ref_w = fp32.layers[0].experts.at(0);
        ExpertWeights w = ref_w;
        kernel->prepare(w, d, f);
        for (int n : {0, 1, 5, 33, 130}) {
            std::vector<float> x(n * d), y(n * d, -1.0f), scratch;
            for (int i = 0; i < n * d; ++i) x[i] = std::sin(0.37f * i) * 1.5f;
            expert_forward(*kernel, w, d, f, x, y, scratch);
            // The exact semantics, against the loop computing the same inputs: FP32 within 1e-5 per element.
            // BF16 within 1e-4 relative L2 per row: an FP32 W1·x that differs from the double one in its
            // last bit can round W2's input to the neighbouring BF16 value (one such flip is ~1e-5 here).
            std::vector<double> same = reference_mlp(ref_w.w13, ref_w.w2, d, f, x, bf16);
            std::vector<float> same_f(same.begin(), same.end());
            for (int i = 0; i < n * d && !bf16; ++i)
                ASSERT_NEAR(y[i], same[i], 1e-5 * (1 + std::abs(same[i]))) << c.dtype << " d=" << d << " n=" << n;
            for (int t = 0; t < n && bf16; ++t)
                EXPECT_LT(reference::row_rel_l2(&y[t * d], &same_f[t * d], d), 1e-4) << "d=" << d << " row " << t;
            if (!bf16 || n == 0) continue;
            // BF16 against the FP32 result: rounding x, W and W2's input to 8 mantissa bits. Bound: 1e-2
            // relative L2 over all rows, 2e-2 for any one row (measured: up to 1.0e-2 for a row at d = 20,
            // where the sums are short and cancel more).
            std::vector<double> exact = reference_mlp(ref_w.w13, ref_w.w2, d, f, x, false);
            std::vector<float> exact_f(exact.begin(), exact.end());
            for (int t = 0; t < n; ++t)
                EXPECT_LT(reference::row_rel_l2(&y[t * d], &exact_f[t * d], d), 2e-2) << "d=" << d << " row " << t;
            const double all = reference::row_rel_l2(y.data(), exact_f.data(), n * d);
            EXPECT_LT(all, 1e-2) << "d=" << d << " n=" << n;
            EXPECT_GT(all, 1e-5) << "BF16 as close as FP32: are the weights rounded?";
            RecordProperty(cat("bf16_rel_l2_d", d, "_n", n), std::to_string(all));
        }
    }
}

// A view of a kernel's arrays copied elsewhere (a host's shared window) runs the same bits as the weights it was
// copied from, keeps that memory alive, and counts its bytes.
TEST_P(KernelTest, ViewOfCopiedArraysGivesTheSameBits) {
    const Case c = GetParam();
    const auto kernel = make_mlp_kernel(c.backend, c.dtype);
    const int d = 64, f = 176, n = 37;
    ModelShape shape;
    shape.num_layers = 1, shape.d_model = d, shape.d_ff = f, shape.num_experts = 1, shape.top_k = 1;
    Model m = make_synthetic_model(
        shape, 4, [](int, int) { return true; }, kernel);
    const ExpertWeights& w = m.layers[0].experts.at(0);
    const MlpArrays a = kernel->arrays(w, d, f);
    ASSERT_EQ(a.w13.size() + a.w2.size(), w.prepared_bytes + (w.w13.size() + w.w2.size()) * sizeof(float));
    auto copy = std::make_shared<std::vector<std::byte>>(a.w13.size() + a.w2.size() + 128);
    std::byte* w13 = copy->data() + 64;  // 64-byte aligned in the window; any address must do for the kernel
    std::byte* w2 = w13 + a.w13.size();
    std::copy(a.w13.begin(), a.w13.end(), w13);
    std::copy(a.w2.begin(), a.w2.end(), w2);
    const ExpertWeights view = kernel->view(w13, w2, d, f, copy);
    EXPECT_EQ(view.prepared_bytes, a.w13.size() + a.w2.size());
    EXPECT_TRUE(view.w13.empty() && view.w2.empty());
    std::weak_ptr<std::vector<std::byte>> kept = copy;
    copy.reset();
    EXPECT_FALSE(kept.expired()) << "the view must keep its memory alive";
    std::vector<float> x(n * d), y(n * d), y_view(n * d, -1.0f), scratch;
    for (int i = 0; i < n * d; ++i) x[i] = std::cos(0.11f * i);
    expert_forward(*kernel, w, d, f, x, y, scratch);
    expert_forward(*kernel, view, d, f, x, y_view, scratch);
    EXPECT_EQ(std::memcmp(y.data(), y_view.data(), y.size() * sizeof(float)), 0);
    const MlpArrays again = kernel->arrays(view, d, f);
    EXPECT_EQ(again.w13.data(), w13);
    EXPECT_EQ(again.w2.data(), w2);
}

INSTANTIATE_TEST_SUITE_P(Backends, KernelTest,
                         ::testing::Values(Case{"openblas", "fp32"}, Case{"onednn", "fp32"}, Case{"onednn", "bf16"}),
                         [](const auto& info) { return std::string(info.param.backend) + "_" + info.param.dtype; });

// BF16 weights take half the bytes of FP32 as loaded (at a shape of whole blocks: the packed onednn/bf16 kernel pads
// the others to its layout's blocks), and no FP32 copy stays.
TEST(Compute, Bf16HalvesWeightBytes) {
    ModelShape shape;
    shape.num_layers = 2, shape.d_model = 64, shape.d_ff = 128, shape.num_experts = 4, shape.top_k = 2;
    auto all = [](int, int) { return true; };
    Model fp32 = make_synthetic_model(shape, 5, all, make_mlp_kernel("onednn", "fp32", /*in_place=*/true));
    Model bf16 = make_synthetic_model(shape, 5, all, make_mlp_kernel("onednn", "bf16"));
    const uint64_t expert_bytes = 3ull * 64 * 128 * 2 * 4 * 2;           // 3 matrices, 4 experts, 2 layers, 2 bytes
    EXPECT_EQ(fp32.weight_bytes() - bf16.weight_bytes(), expert_bytes);  // gates and norms stay FP32
    for (const auto& layer : bf16.layers)
        for (const auto& [e, w] : layer.experts) {
            EXPECT_TRUE(w.w13.empty() && w.w2.empty()) << "FP32 copy kept for expert " << e;
            EXPECT_EQ(w.prepared_bytes, 3ull * 64 * 128 * 2);
        }
    EXPECT_EQ(bf16.kernel->name(), "onednn/bf16");
}

// The FP32 backends agree on every MLP of a model, within 1e-6 relative L2 a row (the packed onednn/fp32 kernel
// included: it drops the loaded weights, so the comparison is against openblas/fp32's forward).
TEST(Compute, BackendsAgreeOnAModel) {
    ModelShape shape;
    shape.num_layers = 2, shape.d_model = 24, shape.d_ff = 40, shape.num_experts = 4, shape.top_k = 2;
    auto all = [](int, int) { return true; };
    std::vector<float> x(17 * 24), ya(x.size()), yb(x.size()), scratch;
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.11f * i);
    Model a = make_synthetic_model(shape, 9, all, make_mlp_kernel("openblas", "fp32"));
    for (bool in_place : {false, true}) {
        Model b = make_synthetic_model(shape, 9, all, make_mlp_kernel("onednn", "fp32", in_place));
        for (size_t l = 0; l < a.layers.size(); ++l)
            for (const auto& [e, w] : a.layers[l].experts) {
                expert_forward(*a.kernel, w, 24, 40, x, ya, scratch);
                expert_forward(*b.kernel, b.layers[l].experts.at(e), 24, 40, x, yb, scratch);
                for (int t = 0; t < 17; ++t)
                    EXPECT_LT(reference::row_rel_l2(&yb[t * 24], &ya[t * 24], 24), 1e-6)
                        << "layer " << l << " expert " << e;
            }
    }
}

// Where onednn/fp32 and onednn/bf16 pack their weights (brgemm), a row's result does not depend on the rows run with
// it (one thread: a rank's, or an expert task's), and the loaded FP32 copies are gone.
TEST(Compute, PackedRowsDoNotDependOnTheBatch) {
    set_compute_threads(1);
    for (const char* dtype : {"fp32", "bf16"}) {
        const auto kernel = make_mlp_kernel("onednn", dtype);
        if (kernel->implementation().find("packed") == std::string::npos) {
            std::printf("onednn/%s not packed here: %s\n", dtype, kernel->implementation().c_str());
            continue;
        }
        const int d = 64, f = 96, rows = 300;
        ExpertWeights w = wave_weights(d, f, 1.0f);
        kernel->prepare(w, d, f);
        EXPECT_TRUE(w.w13.empty() && w.w2.empty()) << dtype;
        EXPECT_GE(w.prepared_bytes, 3ull * d * f * (dtype == std::string("bf16") ? 2 : 4)) << dtype;
        std::vector<float> x(rows * d), all(x.size()), scratch;
        for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.011f * i * i);
        expert_forward(*kernel, w, d, f, x, all, scratch);
        for (int n : {1, 7, 16, 33, 128, 299}) {
            std::vector<float> part(n * d);
            expert_forward(*kernel, w, d, f, std::span<const float>(x).first(n * d), part, scratch);
            EXPECT_EQ(std::memcmp(part.data(), all.data(), part.size() * sizeof(float)), 0)
                << dtype << ", " << n << " rows";
        }
    }
}

// Expert tasks on 2 threads, many at once on the same MLP and row count (the same oneDNN primitive), give the bits
// one thread gives each of them: the primitives keep no state two calls share (a packed primitive's scratchpad
// did, and rows came out wrong now and then).
TEST(Compute, ConcurrentTasksGiveOneThreadsBits) {
    const int d = 48, f = 80, rows = 16, tasks = 48;
    for (const Case c : {Case{"openblas", "fp32"}, Case{"onednn", "fp32"}, Case{"onednn", "bf16"}}) {
        set_compute_threads(1);
        const auto kernel = make_mlp_kernel(c.backend, c.dtype);
        ExpertWeights w = wave_weights(d, f, 0.2f);
        kernel->prepare(w, d, f);
        std::vector<std::vector<float>> x(tasks), alone(tasks), together(tasks);
        std::vector<float> scratch;
        for (int t = 0; t < tasks; ++t) {
            x[t].resize(rows * d), alone[t].resize(rows * d), together[t].resize(rows * d);
            for (size_t i = 0; i < x[t].size(); ++i) x[t][i] = std::cos(0.011f * i * (t + 1));
            expert_forward(*kernel, w, d, f, x[t], alone[t], scratch);
        }
        std::vector<std::vector<float>> slot_scratch(2);
        int wrong = 0;
        for (int round = 0; round < 20; ++round) {
            run_tasks(2, tasks, [&](size_t t, int slot) {
                expert_forward(*kernel, w, d, f, x[t], together[t], slot_scratch[slot]);
            });
            for (int t = 0; t < tasks; ++t)
                wrong += std::memcmp(alone[t].data(), together[t].data(), alone[t].size() * sizeof(float)) != 0;
        }
        EXPECT_EQ(wrong, 0) << kernel->name() << " (" << kernel->implementation() << "): tasks of 20 x " << tasks;
    }
}

TEST(Compute, AutoResolvesByDtype) {
    const std::string bf16 = bf16_support().amx_permitted ? "amx" : "onednn";  // test_mlp_amx.cpp tests amx
    EXPECT_EQ(resolve_backend("auto", "bf16"), bf16);
    const std::string fp32 = resolve_backend("auto", "fp32");
    EXPECT_TRUE(fp32 == "openblas" || fp32 == "onednn") << fp32;
    EXPECT_EQ(resolve_backend("openblas", "fp32"), "openblas");
    EXPECT_EQ(make_mlp_kernel("auto", "bf16")->name(), bf16 + "/bf16");
    EXPECT_EQ(make_mlp_kernel("auto", "fp32")->name(), fp32 + "/fp32");
    EXPECT_EQ(default_mlp_kernel()->name(), fp32 + "/fp32");
}

void expect_error_naming(const std::function<void()>& fn, const std::string& text) {
    try {
        fn();
        ADD_FAILURE() << "no error; expected one naming " << text;
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
}

TEST(Compute, BadPairsNameTheKey) {
    expect_error_naming([] { make_mlp_kernel("openblas", "bf16"); }, "compute.dtype = \"bf16\"");
    expect_error_naming([] { make_mlp_kernel("cublas", "fp32"); }, "compute.backend = \"cublas\"");
    expect_error_naming([] { make_mlp_kernel("onednn", "fp8"); }, "compute.dtype = \"fp8\"");
    Json j = default_config();
    apply_set(j, "compute.backend=openblas");
    apply_set(j, "compute.dtype=bf16");
    expect_error_naming([&] { Config::from_json(j); }, "config key compute.dtype = \"bf16\"");
    EXPECT_EQ(default_config()["compute"]["backend"], "auto");
}

// compute.weight_panel_kib: the packed FP32 kernel with its weights in column panels (here 64 columns each, the
// last ones narrower: d_ff 200 = 64 + 64 + 64 + 8, d_model 160 = 64 + 64 + 32) gives the plain loop's result, a
// row's result does not depend on the rows run with it, and the panels shared as arrays() run the same as prepared.
TEST(Compute, PanelsMatchThePlainLoopAndTheWholeMatrices) {
    set_compute_threads(1);
    const auto whole = make_mlp_kernel("onednn", "fp32");
    if (whole->implementation().find("packed") == std::string::npos) {
        std::printf("onednn/fp32 not packed here: %s\n", whole->implementation().c_str());
        return;
    }
    const auto panels = make_mlp_kernel("onednn", "fp32", false, true, 64);
    EXPECT_NE(panels->implementation().find("in panels of 64 KiB"), std::string::npos) << panels->implementation();
    const int d = 160, f = 200, rows = 150;
    const ExpertWeights loaded = wave_weights(d, f, 0.05f);
    ExpertWeights a = loaded, b = loaded;
    whole->prepare(a, d, f);
    panels->prepare(b, d, f);
    std::vector<float> x(rows * d), ya(x.size()), yb(x.size()), scratch;
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.013f * i * i);
    expert_forward(*whole, a, d, f, x, ya, scratch);
    expert_forward(*panels, b, d, f, x, yb, scratch);
    const std::vector<double> want = reference_mlp(loaded.w13, loaded.w2, d, f, x, false);
    int same_bits = 0;
    for (int t = 0; t < rows; ++t) {
        std::vector<float> w(want.begin() + t * d, want.begin() + (t + 1) * d);
        EXPECT_LT(reference::row_rel_l2(&yb[t * d], w.data(), d), 1e-5) << "row " << t;
        EXPECT_LT(reference::row_rel_l2(&yb[t * d], &ya[t * d], d), 1e-6) << "row " << t;
        same_bits += std::memcmp(&ya[t * d], &yb[t * d], d * sizeof(float)) == 0;
    }
    std::printf("panels: %d of %d rows the whole matrices' bits (all of them on the Intel Xeon, brg:avx512_core)\n",
                same_bits, rows);
    for (int n : {1, 17, 64, 149}) {
        std::vector<float> part(n * d);
        expert_forward(*panels, b, d, f, std::span<const float>(x).first(n * d), part, scratch);
        EXPECT_EQ(std::memcmp(part.data(), yb.data(), part.size() * sizeof(float)), 0) << n << " rows";
    }
    const MlpArrays arr = panels->arrays(b, d, f);
    const ExpertWeights v = panels->view(arr.w13.data(), arr.w2.data(), d, f, b.prepared);
    EXPECT_EQ(v.prepared_bytes, b.prepared_bytes);
    std::vector<float> yv(x.size());
    expert_forward(*panels, v, d, f, x, yv, scratch);
    EXPECT_EQ(std::memcmp(yv.data(), yb.data(), yb.size() * sizeof(float)), 0);
}

TEST(Compute, PanelsRefusedWhereThePackedFp32KernelDoesNotRun) {
    const std::string key = "compute.weight_panel_kib = 256";
    expect_error_naming([] { make_mlp_kernel("openblas", "fp32", false, true, 256); }, key);
    expect_error_naming([] { make_mlp_kernel("onednn", "bf16", false, true, 256); }, key);
    expect_error_naming([] { make_mlp_kernel("onednn", "fp32", true, true, 256); }, key);
    expect_error_naming([] { make_mlp_kernel("onednn", "fp32", false, false, 256); }, key);
    Json j = default_config();
    apply_set(j, "compute.weight_panel_kib=32");
    expect_error_naming([&] { Config::from_json(j); }, "compute.weight_panel_kib");
}

// run_tasks: every task once, slots within the thread count, OpenBLAS's threads restored, and a task's
// exception rethrown after the others stop.
TEST(RunTasks, EveryTaskOnceAndTheFirstFailureRethrown) {
    for (int threads : {1, 2, 3}) {
        std::vector<int> ran(50, 0);
        std::vector<int> slots(50, -1);
        run_tasks(threads, ran.size(), [&](size_t i, int slot) {
            ++ran[i];
            slots[i] = slot;
        });
        for (size_t i = 0; i < ran.size(); ++i) {
            EXPECT_EQ(ran[i], 1) << "task " << i << " at " << threads << " threads";
            EXPECT_TRUE(slots[i] >= 0 && slots[i] < std::max(threads, 1)) << slots[i];
        }
    }
    EXPECT_THROW(run_tasks(2, 8,
                           [](size_t i, int) {
                               if (i == 5) fail("task ", i, " failed");
                           }),
                 Error);
}

}  // namespace
}  // namespace epmoe
