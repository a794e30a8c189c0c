// The whole-model forward (DecoderForward) against the plain-loop double reference::decoder_logits, on synthetic
// models that combine attention features no HF fixture has all together: sliding windows shorter than the
// sequence, q/k/v (and o) biases, whole and per-head q/k norms, head_dim != d_model / num_heads, grouped-query,
// multi-query and multi-head attention, tied embeddings, sigmoid gates and top-k weights left unnormalised.
// Each rank holds only its experts (contiguous placement); the reference holds them all. ctest runs this at 1-4
// ranks against one reference, so passing at every count also says the logits do not depend on the rank count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include "../reference/decoder_reference.hpp"
#include "../reference/moe_reference.hpp"
#include "epmoe/model/decoder_forward.hpp"
#include "epmoe/model/synthetic.hpp"

namespace epmoe {
namespace {

constexpr uint64_t kSeed = 23;
constexpr int kVocab = 50;
constexpr double kTolerance = 1e-5;  // relative L2 per row of logits

struct Case {
    const char* name;
    int d_model, num_heads, num_kv_heads, head_dim, sliding_window;
    double rope_theta;
    bool qkv_bias;  // also an o_proj bias (no HF family has one; AttentionWeights and the reference do)
    QkNorm qk_norm;
    bool tied;
    int num_experts, top_k;
    GateKind gate;
    bool norm_topk;
    std::vector<int> lengths;  // [num_sequences] tokens of each sequence
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

// A, C and D have windows shorter than most sequences; B and C hold a sequence longer than attention's block
// of 64 query rows; B has fewer experts than 4 ranks, so some rank runs no expert.
// clang-format off
const std::vector<Case> kCases = {
    // name
    //  d   heads kv hd  win theta bias   qk_norm           tied   E  k  gate                norm   lengths
    {"WindowBiasWholeNormGqaTiedSigmoid",
     32, 4,    2, 12, 4,  1e4,  true,  QkNorm::kWhole,   true,  6, 2, GateKind::kSigmoid, false, {10, 7, 12, 3, 9, 1}},
    {"BiasPerHeadNormMhaUntiedSoftmax",
     40, 4,    4, 6,  0,  500,  true,  QkNorm::kPerHead, false, 3, 2, GateKind::kSoftmax, true,  {9, 70, 5, 11, 2}},
    {"WindowPerHeadNormMqaTiedSigmoidNorm",
     48, 6,    1, 10, 3,  1e6,  false, QkNorm::kPerHead, true,  8, 3, GateKind::kSigmoid, true,  {12, 8, 67, 4, 10}},
    {"WindowOfOneBiasGqaUntiedTop1",
     36, 6,    3, 4,  1,  100,  true,  QkNorm::kNone,    false, 4, 1, GateKind::kSoftmax, false, {6, 11, 8, 2, 10}},
};
// clang-format on

ModelShape shape_of(const Case& c) {
    ModelShape s;
    s.num_layers = 2;
    s.d_model = c.d_model;
    s.d_ff = 24;
    s.num_experts = c.num_experts;
    s.top_k = c.top_k;
    s.gate = c.gate;
    s.norm_topk_prob = c.norm_topk;
    s.rms_norm_eps = 1e-6;
    s.decoder = {kVocab,           c.num_heads, c.num_kv_heads, c.head_dim, c.rope_theta,
                 c.sliding_window, c.qkv_bias,  c.qk_norm,      c.tied};
    return s;
}

// v[i] = centre + scale * (2u - 1), u uniform from (kSeed, id, i): deterministic, the same on every rank.
void fill(std::vector<float>& v, uint64_t id, float centre, float scale) {
    for (size_t i = 0; i < v.size(); ++i) v[i] = centre + scale * (2.0f * hash_uniform(kSeed, id, i, 1) - 1.0f);
}

// The synthetic decoder has unit norms and small biases: make every norm weight (in [0.5, 1.5)) and bias
// (in [-0.5, 0.5)) matter, and add an o_proj bias where the case has biases.
void perturb(DecoderWeights& decoder, const Case& c) {
    fill(decoder.final_norm, 1, 1.0f, 0.5f);
    for (size_t l = 0; l < decoder.layers.size(); ++l) {
        AttentionWeights& a = decoder.layers[l];
        const uint64_t id = 100 + 10 * l;
        fill(a.input_norm, id, 1.0f, 0.5f);
        fill(a.q_norm, id + 1, 1.0f, 0.5f);
        fill(a.k_norm, id + 2, 1.0f, 0.5f);
        fill(a.bq, id + 3, 0.0f, 0.5f);
        fill(a.bk, id + 4, 0.0f, 0.5f);
        fill(a.bv, id + 5, 0.0f, 0.5f);
        if (c.qkv_bias) {
            a.bo.resize(static_cast<size_t>(c.d_model));
            fill(a.bo, id + 6, 0.0f, 0.2f);
        }
    }
}

void perturb(Model& model) {
    for (size_t l = 0; l < model.layers.size(); ++l) fill(model.layers[l].norm, 200 + l, 1.0f, 0.5f);
}

// One case on this rank: its experts, every expert for the reference, the replicated decoder, the sequences and
// the reference's logits of every sequence.
struct Scenario {
    ModelShape shape;
    Placement placement;
    Model mine, full;
    DecoderWeights decoder;
    std::vector<std::vector<int32_t>> ids;     // [num_sequences][length]
    std::vector<std::vector<float>> expected;  // [num_sequences][length * vocab]

    Scenario(const mpi::Comm& comm, const Case& c)
        : shape(shape_of(c)), placement(Placement::make("contiguous", c.num_experts, comm.size())) {
        mine = make_synthetic_model(shape, kSeed, [&](int, int e) { return placement.owns(comm.rank(), e); });
        full = make_synthetic_model(shape, kSeed, [](int, int) { return true; });
        perturb(mine), perturb(full);
        decoder = make_synthetic_decoder(shape, kSeed);
        perturb(decoder, c);
        check_decoder(decoder, shape, c.name);
        for (size_t i = 0; i < c.lengths.size(); ++i) {
            std::vector<int32_t>& seq = ids.emplace_back();
            for (int t = 0; t < c.lengths[i]; ++t)
                seq.push_back(static_cast<int32_t>(hash_uniform(kSeed, 300 + i, t, 2) * kVocab));
            expected.push_back(reference::decoder_logits(full, decoder, seq));
        }
    }
};

// Which rank runs sequence i out of num_ranks.
using Owner = int (*)(int i, int num_ranks);
int round_robin(int i, int num_ranks) { return i % num_ranks; }
// Rank 0 (and at 4 ranks rank 2 too) gets nothing; rank 1 gets one sequence from 3 ranks on; the last the rest.
int lopsided(int i, int num_ranks) { return num_ranks >= 3 && i == 0 ? 1 : num_ranks - 1; }

// One collective step over this rank's chunks, numbering tokens as WholeModel::step does.
std::vector<float> run_step(const mpi::Comm& comm, DecoderForward& forward, std::span<const SequenceChunk> chunks,
                            LogitRows rows) {
    int64_t tokens = 0;
    for (const SequenceChunk& c : chunks) tokens += static_cast<int64_t>(c.ids.size());
    const int64_t first = mpi::exscan_sum<int64_t>(comm, std::span<const int64_t>(&tokens, 1))[0];
    const int64_t all = mpi::allreduce_one<int64_t>(comm, tokens, mpi::Op::kSum);
    std::vector<float> logits;
    forward.step(comm, chunks, rows, first, all, {}, logits);
    return logits;
}

// Compares got [num_rows, vocab] with the reference's rows pos .. pos + num_rows - 1 of one sequence (expected
// [length * vocab]); updates the worst relative L2 and the count of rows checked.
void compare_rows(const float* got, const std::vector<float>& expected, int64_t pos, int64_t num_rows, double& worst,
                  int64_t& checked) {
    for (int64_t r = 0; r < num_rows; ++r) {
        worst = std::max(worst, reference::row_rel_l2(got + r * kVocab, &expected[(pos + r) * kVocab], kVocab));
        ++checked;
    }
}

// Worst error over all ranks; every token (or chunk) of every sequence must have been checked once.
void report(const mpi::Comm& comm, const Case& c, const char* what, double worst, int64_t checked, int64_t want) {
    const double all_worst = mpi::allreduce_one(comm, worst, mpi::Op::kMax);
    const int64_t all_checked = mpi::allreduce_one(comm, checked, mpi::Op::kSum);
    EXPECT_LE(all_worst, kTolerance) << c.name << ", " << what << " at " << comm.size() << " ranks";
    EXPECT_EQ(all_checked, want) << c.name << ", " << what << ": rows checked over all ranks";
    if (comm.rank() == 0)
        std::printf("  %s, %s, %d ranks: worst row rel L2 %.3g\n", c.name, what, comm.size(), all_worst);
}

class DecoderMpi : public ::testing::TestWithParam<Case> {};

// (a), (b): every sequence of a rank is one chunk of a single step, all rows' logits. No ASSERT_* before a
// collective: a rank that returned early would leave the others waiting.
void check_whole_sequences(const Case& c, Owner owner, const char* what) {
    mpi::Comm comm(MPI_COMM_WORLD);
    const Scenario s(comm, c);
    Forward moe(s.mine, s.placement, 0.0);
    DecoderForward forward(s.mine, s.decoder, moe);
    std::vector<SequenceCache> caches;
    std::vector<SequenceChunk> chunks;
    std::vector<size_t> mine;  // [chunks] the sequence of each chunk
    for (size_t i = 0; i < s.ids.size(); ++i)
        if (owner(static_cast<int>(i), comm.size()) == comm.rank()) mine.push_back(i);
    caches.assign(mine.size(), make_sequence_cache(s.shape.num_layers));
    for (size_t j = 0; j < mine.size(); ++j) chunks.push_back({s.ids[mine[j]], &caches[j]});
    const std::vector<float> logits = run_step(comm, forward, chunks, LogitRows::kAll);
    int64_t tokens = 0, all_tokens = 0, checked = 0;
    for (const std::vector<int32_t>& seq : s.ids) all_tokens += static_cast<int64_t>(seq.size());
    for (size_t i : mine) tokens += static_cast<int64_t>(s.ids[i].size());
    EXPECT_EQ(logits.size(), static_cast<size_t>(tokens) * kVocab) << what << " on rank " << comm.rank();
    double worst = 0;
    int64_t row = 0;
    for (size_t j = 0; j < mine.size() && logits.size() == static_cast<size_t>(tokens) * kVocab; ++j) {
        const int64_t n = static_cast<int64_t>(s.ids[mine[j]].size());
        compare_rows(&logits[row * kVocab], s.expected[mine[j]], 0, n, worst, checked);
        EXPECT_EQ(caches[j].length(), n);
        row += n;
    }
    report(comm, c, what, worst, checked, all_tokens);
}

TEST_P(DecoderMpi, EveryTokenMatchesReference) { check_whole_sequences(GetParam(), round_robin, "round robin"); }

TEST_P(DecoderMpi, UnevenSpreadWithIdleRanks) { check_whole_sequences(GetParam(), lopsided, "lopsided"); }

// (c): the chunk sizes a sequence of `length` tokens is fed in: a prompt (3 tokens, or all but the last 10 of a
// long sequence), then 1, 1, 5, 1, 2, 1, 1, ... clipped to what is left. 5 crosses every window of the cases.
std::vector<int> chunk_sizes(int length) {
    static const int kPattern[] = {1, 1, 5, 1, 2, 1};
    std::vector<int> sizes = {std::min(length, std::max(3, length - 10))};
    for (int done = sizes[0], i = 0; done < length; done += sizes.back(), ++i)
        sizes.push_back(std::min(kPattern[i % 6], length - done));
    return sizes;
}

// Feeds each sequence in chunks through successive steps, sequence i starting at step i % 3 (so one step mixes
// prompts and single tokens, and ranks finish at different steps but keep taking part with no chunks).
// sharded: the LM head split over the ranks by vocabulary (ShardedHead, as generate runs it).
void check_chunked(const Case& c, LogitRows rows, const char* what, bool sharded = false) {
    mpi::Comm comm(MPI_COMM_WORLD);
    const Scenario s(comm, c);
    Forward moe(s.mine, s.placement, 0.0);
    std::optional<ShardedHead> head;
    if (sharded) head.emplace(comm, s.decoder.head(), kVocab, s.shape.d_model);
    DecoderForward forward(s.mine, s.decoder, moe, nullptr, head ? &*head : nullptr);
    const size_t num_seqs = s.ids.size();
    std::vector<std::vector<int>> sizes(num_seqs);
    std::vector<SequenceCache> caches(num_seqs, make_sequence_cache(s.shape.num_layers));
    std::vector<int64_t> done(num_seqs, 0);
    size_t num_steps = 0;  // the same on every rank: every sequence's schedule is known everywhere
    int64_t want = 0;
    for (size_t i = 0; i < num_seqs; ++i) {
        sizes[i] = chunk_sizes(static_cast<int>(s.ids[i].size()));
        num_steps = std::max(num_steps, i % 3 + sizes[i].size());
        want += rows == LogitRows::kAll ? static_cast<int64_t>(s.ids[i].size()) : static_cast<int64_t>(sizes[i].size());
    }
    double worst = 0;
    int64_t checked = 0;
    for (size_t step = 0; step < num_steps; ++step) {
        std::vector<SequenceChunk> chunks;
        std::vector<size_t> seq_of;  // [chunks]
        for (size_t i = 0; i < num_seqs; ++i) {
            if (round_robin(static_cast<int>(i), comm.size()) != comm.rank() || step < i % 3) continue;
            if (step - i % 3 >= sizes[i].size()) continue;
            const size_t n = static_cast<size_t>(sizes[i][step - i % 3]);
            chunks.push_back({std::span<const int32_t>(s.ids[i]).subspan(static_cast<size_t>(done[i]), n), &caches[i]});
            seq_of.push_back(i);
        }
        const std::vector<float> logits = run_step(comm, forward, chunks, rows);
        size_t want_rows = 0;
        for (const SequenceChunk& ch : chunks) want_rows += rows == LogitRows::kAll ? ch.ids.size() : 1;
        EXPECT_EQ(logits.size(), want_rows * kVocab) << what << ", step " << step << " on rank " << comm.rank();
        const bool sized = logits.size() == want_rows * kVocab;
        int64_t row = 0;
        for (size_t j = 0; j < chunks.size(); ++j) {
            const size_t i = seq_of[j];
            const int64_t n = static_cast<int64_t>(chunks[j].ids.size()), first = done[i];
            const int64_t keep = rows == LogitRows::kAll ? n : 1,
                          from = rows == LogitRows::kAll ? first : first + n - 1;
            if (sized) compare_rows(&logits[row * kVocab], s.expected[i], from, keep, worst, checked);
            row += keep;
            done[i] += n;
            EXPECT_EQ(caches[i].length(), done[i]) << what << ": cache of sequence " << i;
        }
    }
    report(comm, c, what, worst, checked, want);
}

TEST_P(DecoderMpi, ChunkedDecodeLastRowsMatchReference) {
    check_chunked(GetParam(), LogitRows::kLast, "chunks, last rows");
}

TEST_P(DecoderMpi, ChunkedDecodeShardedHeadMatchesReference) {
    check_chunked(GetParam(), LogitRows::kLast, "chunks, last rows, head split by vocabulary", true);
}

TEST_P(DecoderMpi, ChunkedDecodeAllRowsMatchReference) {
    check_chunked(GetParam(), LogitRows::kAll, "chunks, all rows");
}

// The test can fail: each perturbed part and each feature of the case moves the reference's logits by far more
// than the tolerance (reference only, no collective).
TEST_P(DecoderMpi, EveryFeatureMovesTheLogits) {
    const Case& c = GetParam();
    mpi::Comm comm(MPI_COMM_WORLD);
    const Scenario s(comm, c);
    const size_t longest =
        static_cast<size_t>(std::max_element(c.lengths.begin(), c.lengths.end()) - c.lengths.begin());
    auto moved = [&](const char* part, Model model, DecoderWeights decoder) {
        const std::vector<float> got = reference::decoder_logits(model, decoder, s.ids[longest]);
        double most = 0;
        for (size_t t = 0; t < s.ids[longest].size(); ++t)
            most = std::max(most, reference::row_rel_l2(&got[t * kVocab], &s.expected[longest][t * kVocab], kVocab));
        EXPECT_GT(most, 100 * kTolerance) << c.name << ": " << part << " does not change the logits";
    };
    auto edit_layers = [&](auto fn) {
        DecoderWeights d = s.decoder;
        for (AttentionWeights& a : d.layers) fn(a);
        return d;
    };
    Model ones = s.full;
    for (MoeLayer& layer : ones.layers) std::fill(layer.norm.begin(), layer.norm.end(), 1.0f);
    moved("post-attention norm", ones, s.decoder);
    DecoderWeights d = s.decoder;
    std::fill(d.final_norm.begin(), d.final_norm.end(), 1.0f);
    moved("final norm", s.full, d);
    moved("input norm", s.full,
          edit_layers([](AttentionWeights& a) { a.input_norm.assign(a.input_norm.size(), 1.0f); }));
    // A window of one key makes every softmax 1: the output is o(v) whatever q and k are.
    const bool scores_matter = c.sliding_window != 1;
    if (scores_matter) {
        Model other_theta = s.full;
        other_theta.shape.decoder.rope_theta *= 3;
        moved("rope_theta", other_theta, s.decoder);
    }
    if (c.sliding_window > 0) {
        Model no_window = s.full;
        no_window.shape.decoder.sliding_window = 0;
        moved("sliding window", no_window, s.decoder);
    }
    if (c.qkv_bias && scores_matter) {
        moved("q bias", s.full, edit_layers([](AttentionWeights& a) { a.bq.assign(a.bq.size(), 0.0f); }));
        moved("k bias", s.full, edit_layers([](AttentionWeights& a) { a.bk.assign(a.bk.size(), 0.0f); }));
    }
    if (c.qkv_bias) {
        moved("v bias", s.full, edit_layers([](AttentionWeights& a) { a.bv.assign(a.bv.size(), 0.0f); }));
        moved("o bias", s.full, edit_layers([](AttentionWeights& a) { a.bo.clear(); }));
    }
    if (c.qk_norm != QkNorm::kNone && scores_matter) {
        moved("q norm", s.full, edit_layers([](AttentionWeights& a) { a.q_norm.assign(a.q_norm.size(), 1.0f); }));
        moved("k norm", s.full, edit_layers([](AttentionWeights& a) { a.k_norm.assign(a.k_norm.size(), 1.0f); }));
    }
}

INSTANTIATE_TEST_SUITE_P(Cases, DecoderMpi, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& param) { return std::string(param.param.name); });

// A step in which no rank has a token is still a collective step: it returns no logits and leaves the next
// step correct.
TEST(DecoderMpiEdge, StepWithNoTokensAnywhere) {
    mpi::Comm comm(MPI_COMM_WORLD);
    const Scenario s(comm, kCases[0]);
    Forward moe(s.mine, s.placement, 0.0);
    DecoderForward forward(s.mine, s.decoder, moe);
    std::vector<float> logits = run_step(comm, forward, {}, LogitRows::kLast);
    EXPECT_TRUE(logits.empty());
    SequenceCache cache = make_sequence_cache(s.shape.num_layers);
    const SequenceChunk chunk{s.ids[0], &cache};
    const bool mine = comm.rank() == comm.size() - 1;
    logits =
        run_step(comm, forward, mine ? std::span<const SequenceChunk>(&chunk, 1) : std::span<const SequenceChunk>(),
                 LogitRows::kLast);
    double worst = 0;
    int64_t checked = 0;
    EXPECT_EQ(logits.size(), mine ? size_t{kVocab} : 0);
    if (mine && logits.size() == size_t{kVocab})
        compare_rows(logits.data(), s.expected[0], static_cast<int64_t>(s.ids[0].size()) - 1, 1, worst, checked);
    report(comm, kCases[0], "after an empty step", worst, checked, 1);
}

}  // namespace
}  // namespace epmoe
