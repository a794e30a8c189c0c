// Token files (src/io/tokens.cpp): safetensors input_ids I32/I64 [N] and [B, S], raw uint16/uint32 .bin, llm.c's
// headered .bin, the exact text of each error, perplexity windows and the split over ranks.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "epmoe/base/error.hpp"
#include "epmoe/io/safetensors.hpp"
#include "epmoe/io/tokens.hpp"

namespace epmoe {
namespace {

// A path under gtest's scratch directory, unique to this file.
std::string tokens_path(const std::string& name) { return ::testing::TempDir() + "epmoe_tokens_" + name; }

// The message of the Error fn throws, or "no error".
std::string tokens_error(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    }
    return "no error";
}

// Writes `header` int32s (none for a raw file) then `ids` as little-endian T.
template <typename T>
void write_token_bin(const std::string& path, const std::vector<T>& ids, const std::vector<int32_t>& header = {}) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(header.data()), static_cast<std::streamsize>(header.size() * 4));
    out.write(reinterpret_cast<const char*>(ids.data()), static_cast<std::streamsize>(ids.size() * sizeof(T)));
    ASSERT_TRUE(out.good()) << path;
}

// llm.c's header as dev/data/data_common.py write_datafile builds it: 256 int32, [magic, version, count, 0...].
std::vector<int32_t> tokens_llmc_header(int32_t magic, int32_t version, int32_t num_tokens) {
    std::vector<int32_t> h(256, 0);
    h[0] = magic;
    h[1] = version;
    h[2] = num_tokens;
    return h;
}

// An input_ids tensor of any dtype whose elements are `values` (8 bytes each for I64, else 4).
TensorToWrite tokens_tensor(DType dtype, std::vector<int64_t> shape, const std::vector<int64_t>& values,
                            const std::string& name = "input_ids") {
    TensorToWrite t{name, dtype, std::move(shape), std::vector<std::byte>(values.size() * dtype_size(dtype))};
    for (size_t i = 0; i < values.size(); ++i) {
        if (dtype == DType::kI64) {
            std::memcpy(t.bytes.data() + 8 * i, &values[i], 8);
        } else {
            const auto v32 = static_cast<int32_t>(values[i]);
            std::memcpy(t.bytes.data() + dtype_size(dtype) * i, &v32, dtype_size(dtype));
        }
    }
    return t;
}

std::vector<int32_t> tokens_to_i32(const std::vector<int64_t>& v) { return {v.begin(), v.end()}; }

TEST(Tokens, SafetensorsStreamAndBatchI32AndI64) {
    const std::string path = tokens_path("st.safetensors");
    const std::vector<int64_t> values = {0, 7, 3, 9, 1, 2};
    for (const DType dtype : {DType::kI32, DType::kI64}) {
        write_safetensors(path,
                          {tokens_tensor(dtype, {6}, values), tensor_from_f32("other", {1}, std::vector<float>{1.0f})});
        TokenFile stream = read_tokens(path, 10);
        EXPECT_EQ(stream.ids, tokens_to_i32(values));
        EXPECT_TRUE(stream.is_stream);
        EXPECT_EQ(stream.num_sequences, 1);
        EXPECT_EQ(stream.seq_len, 6);
        write_safetensors(path, {tokens_tensor(dtype, {2, 3}, values)});
        TokenFile batch = read_tokens(path, 10, "uint16");  // the width is ignored for safetensors
        EXPECT_EQ(batch.ids, tokens_to_i32(values));
        EXPECT_FALSE(batch.is_stream);
        EXPECT_EQ(batch.num_sequences, 2);
        EXPECT_EQ(batch.seq_len, 3);
        const TokenShape shape = token_file_shape(path, 10);
        EXPECT_EQ(shape.num_tokens(), 6);
        EXPECT_EQ(shape.format, dtype == DType::kI32 ? "safetensors I32" : "safetensors I64");
    }
}

TEST(Tokens, SafetensorsErrors) {
    const std::string p = tokens_path("bad.safetensors");
    const auto error_with = [&](TensorToWrite t) {
        write_safetensors(p, {std::move(t)});
        return tokens_error([&] { read_tokens(p, 1 << 20); });
    };
    const std::string tensor = p + ": tensor 'input_ids'";
    EXPECT_EQ(error_with(tokens_tensor(DType::kI64, {2, 3}, {0, 1, 2, int64_t{1} << 32, 4, 5})),
              tensor + " position 3 [1, 0] holds 4294967296, which does not fit in int32");
    EXPECT_EQ(error_with(tokens_tensor(DType::kI64, {3}, {0, -(int64_t{1} << 40), 1})),
              tensor + " position 1 holds -1099511627776, which does not fit in int32");
    EXPECT_EQ(error_with(tokens_tensor(DType::kI32, {3}, {0, 1, -2})),
              tensor + " position 2 holds id -2, not in [0, 1048576) (the model's vocab_size)");
    EXPECT_EQ(error_with(tensor_from_f32("input_ids", {2}, std::vector<float>{1.0f, 2.0f})),
              tensor + " has dtype F32; expected I32 or I64");
    EXPECT_EQ(error_with(tokens_tensor(DType::kI16, {2}, {1, 2})), tensor + " has dtype I16; expected I32 or I64");
    const std::string expected = "; expected [N] (one stream) or [B, S] (B sequences of S tokens)";
    EXPECT_EQ(error_with(tokens_tensor(DType::kI32, {1, 2, 2}, {1, 2, 3, 4})),
              tensor + " has shape [1, 2, 2]" + expected);
    EXPECT_EQ(error_with(tokens_tensor(DType::kI32, {}, {1})), tensor + " has shape []" + expected);
    EXPECT_EQ(error_with(tokens_tensor(DType::kI32, {0}, {})), tensor + " has shape [0]: no tokens");
    EXPECT_EQ(error_with(tokens_tensor(DType::kI64, {0, 4}, {})), tensor + " has shape [0, 4]: no tokens");
    EXPECT_EQ(error_with(tokens_tensor(DType::kI32, {3, 0}, {})), tensor + " has shape [3, 0]: no tokens");
    EXPECT_EQ(error_with(tokens_tensor(DType::kI32, {2}, {1, 2}, "ids")),
              p + ": no tensor 'input_ids' (the file holds 'ids')");
}

TEST(Tokens, OutOfRangeIdNamesPositionAndValue) {
    const std::string st = tokens_path("range.safetensors");
    write_safetensors(st, {tokens_tensor(DType::kI32, {2, 3}, {1, 2, 3, 4, 10, 5})});
    EXPECT_EQ(tokens_error([&] { read_tokens(st, 10); }),
              st + ": tensor 'input_ids' position 4 [1, 1] holds id 10, not in [0, 10) (the model's vocab_size)");
    const std::string bin = tokens_path("range.bin");
    write_token_bin<uint16_t>(bin, {5, 50256, 0, 50257, 60000});
    EXPECT_EQ(tokens_error([&] { read_tokens(bin, 50257); }),
              bin + ": position 3 holds id 50257, not in [0, 50257) (the model's vocab_size)");  // the first bad one
    write_token_bin<uint32_t>(bin, {1, 0x80000000u});
    EXPECT_EQ(tokens_error([&] { read_tokens(bin, 100, "uint32"); }),
              bin + ": position 1 holds id 2147483648, not in [0, 100) (the model's vocab_size)");
}

TEST(Tokens, RawBinUint16AndUint32) {
    const std::string path = tokens_path("raw.bin");
    write_token_bin<uint16_t>(path, {0, 65535, 50256, 7});
    TokenFile f = read_tokens(path, 65536);  // auto: uint16 up to a vocabulary of 65536
    EXPECT_EQ(f.ids, (std::vector<int32_t>{0, 65535, 50256, 7}));
    EXPECT_TRUE(f.is_stream);
    EXPECT_EQ(f.num_sequences, 1);
    EXPECT_EQ(f.seq_len, 4);
    EXPECT_EQ(token_file_shape(path, 65536).format, "raw uint16");
    EXPECT_EQ(read_tokens(path, 200000, "uint16").ids, f.ids);
    // The same bytes as uint32, chosen by the vocabulary (auto) or explicitly.
    write_token_bin<uint16_t>(path, {1, 2, 3, 0});
    EXPECT_EQ(read_tokens(path, 200000).ids, (std::vector<int32_t>{2 << 16 | 1, 3}));
    EXPECT_EQ(read_tokens(path, 200000, "uint32").ids, (std::vector<int32_t>{2 << 16 | 1, 3}));
    write_token_bin<uint32_t>(path, {128000, 3, 0});
    EXPECT_EQ(read_tokens(path, 128256).ids, (std::vector<int32_t>{128000, 3, 0}));
    EXPECT_EQ(read_tokens(path, 128256, "uint32").seq_len, 3);
    EXPECT_EQ(token_file_shape(path, 128256).format, "raw uint32");
}

TEST(Tokens, BinSizeAndArgumentErrors) {
    const std::string path = tokens_path("odd.bin");
    write_token_bin<uint8_t>(path, {1, 0, 2, 0, 3, 0, 4});
    EXPECT_EQ(tokens_error([&] { read_tokens(path, 100); }),
              path + ": 7 bytes is not a whole number of uint16 ids (2 bytes each)");
    write_token_bin<uint16_t>(path, {1, 2, 3});
    EXPECT_EQ(tokens_error([&] { read_tokens(path, 100, "uint32"); }),
              path + ": 6 bytes is not a whole number of uint32 ids (4 bytes each)");
    EXPECT_EQ(tokens_error([&] { read_tokens(path, 100, "int8"); }),
              "token width 'int8' is not uint16, uint32 or auto");
    EXPECT_EQ(tokens_error([&] { read_tokens(path, 0); }), "vocab_size 0 is not in [1, 2^31]");
    write_token_bin<uint16_t>(path, {});
    EXPECT_EQ(tokens_error([&] { read_tokens(path, 100); }), path + ": no tokens (0 bytes)");
    const std::string txt = tokens_path("ids.txt");
    write_token_bin<uint16_t>(txt, {1});
    EXPECT_EQ(tokens_error([&] { read_tokens(txt, 100); }),
              txt + ": not a token file: expected .safetensors (tensor input_ids) or .bin (uint16/uint32 ids)");
    const std::string missing = tokens_path("missing.bin");
    EXPECT_EQ(tokens_error([&] { read_tokens(missing, 100); }).rfind(missing + ": cannot open: ", 0), 0u);
}

TEST(Tokens, LlmcHeaderedBin) {
    const std::string path = tokens_path("llmc.bin");
    const std::vector<uint16_t> gpt2 = {50256, 15496, 11, 995, 0};
    write_token_bin(path, gpt2, tokens_llmc_header(20240520, 1, 5));
    for (const char* width : {"auto", "uint16"}) {
        TokenFile f = read_tokens(path, 100000, width);  // auto follows the header, not the vocabulary
        EXPECT_EQ(f.ids, std::vector<int32_t>(gpt2.begin(), gpt2.end()));
        EXPECT_TRUE(f.is_stream);
        EXPECT_EQ(f.seq_len, 5);
    }
    EXPECT_EQ(token_file_shape(path, 50257).format, "llm.c uint16 (magic 20240520, version 1)");
    EXPECT_EQ(tokens_error([&] { read_tokens(path, 50257, "uint32"); }),
              path + ": the llm.c header (magic 20240520, version 1) says the ids are uint16, not uint32");
    const std::vector<uint32_t> llama3 = {128000, 9906, 1917, 128001};
    write_token_bin(path, llama3, tokens_llmc_header(20240801, 7, 4));
    EXPECT_EQ(read_tokens(path, 128256).ids, std::vector<int32_t>(llama3.begin(), llama3.end()));
    write_token_bin<uint32_t>(path, {1, 2, 3}, tokens_llmc_header(20240801, 7, 3));
    EXPECT_EQ(read_tokens(path, 100).ids, (std::vector<int32_t>{1, 2, 3}));  // uint32 where auto says uint16
    write_token_bin(path, llama3, tokens_llmc_header(20240801, 7, 4));
    EXPECT_EQ(tokens_error([&] { read_tokens(path, 128000); }),
              path + ": position 0 holds id 128000, not in [0, 128000) (the model's vocab_size)");
    write_token_bin(path, llama3, tokens_llmc_header(20240801, 7, 5));
    EXPECT_EQ(tokens_error([&] { read_tokens(path, 128256); }),
              path +
                  ": the llm.c header (magic 20240801, version 7) counts 5 uint32 tokens (1044 bytes with the "
                  "header), but the file has 1040 bytes");
    write_token_bin<uint16_t>(path, {}, tokens_llmc_header(20240520, 1, 0));
    EXPECT_EQ(tokens_error([&] { read_tokens(path, 100); }),
              path + ": the llm.c header (magic 20240520, version 1) counts 0 tokens: no tokens");
    write_token_bin(path, gpt2, tokens_llmc_header(20240520, 2, 5));
    EXPECT_EQ(tokens_error([&] { read_tokens(path, 50257); }),
              path +
                  ": llm.c header with magic 20240520 and version 2; epmoe reads magic 20240520 version 1 (uint16) "
                  "and magic 20240801 version 7 (uint32)");
    write_token_bin(path, gpt2, tokens_llmc_header(20240522, 1, 5));
    EXPECT_EQ(tokens_error([&] { read_tokens(path, 50257); }),
              path + ": an llm.c multiple-choice eval file (magic 20240522), not a token stream");
    // Under 1024 bytes there is no header: the magic's bytes are read as raw ids.
    write_token_bin<int32_t>(path, {20240520, 1, 2});
    EXPECT_EQ(read_tokens(path, 65536).ids.size(), 6u);
}

TEST(Tokens, RangeReadEqualsSliceOfFullRead) {
    const std::string bin = tokens_path("slice.bin"), st = tokens_path("slice.safetensors");
    std::vector<uint32_t> ids(300);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<uint32_t>((i * 7919) % 1000);
    std::vector<int64_t> wide(ids.begin(), ids.end());
    const auto check = [](const std::string& path, const std::string& width) {
        const TokenFile all = read_tokens(path, 1000, width);
        for (int64_t first : {0, 1, 17, 150, 299, 300})
            for (int64_t count : {0, 1, 5, 150})
                if (first + count <= static_cast<int64_t>(all.ids.size()))
                    EXPECT_EQ(read_tokens_range(path, first, count, 1000, width),
                              std::vector<int32_t>(all.ids.begin() + first, all.ids.begin() + first + count))
                        << path << " [" << first << ", +" << count << ")";
        const std::string where = path.ends_with(".safetensors") ? path + ": tensor 'input_ids'" : path;
        EXPECT_EQ(tokens_error([&] { read_tokens_range(path, 299, 2, 1000, width); }),
                  where + ": positions [299, 301) are not inside its 300 tokens");
    };
    write_token_bin(bin, ids);
    check(bin, "uint32");
    write_token_bin(bin, ids, tokens_llmc_header(20240801, 7, 300));
    check(bin, "auto");
    write_safetensors(st, {tokens_tensor(DType::kI64, {3, 100}, wide)});
    check(st, "auto");
    // Only the range is checked: a bad id elsewhere does not fail it; inside, it names its file position.
    wide[250] = 5000;
    write_safetensors(st, {tokens_tensor(DType::kI32, {3, 100}, wide)});
    EXPECT_EQ(read_tokens_range(st, 100, 100, 1000).size(), 100u);
    EXPECT_EQ(
        tokens_error([&] { read_tokens_range(st, 200, 100, 1000); }),
        st + ": tensor 'input_ids' position 250 [2, 50] holds id 5000, not in [0, 1000) (the model's vocab_size)");
}

// A stream larger than memory: the shape comes from the file size and a range read touches only its own pages
// (a sparse 8 GiB file of zeros: reading it all would take seconds and 16 GiB).
TEST(Tokens, RangeOfHugeSparseFile) {
    const std::string path = tokens_path("huge.bin");
    constexpr int64_t kBytes = int64_t{8} << 30;
    { std::ofstream create(path, std::ios::binary | std::ios::trunc); }
    std::error_code ec;
    std::filesystem::resize_file(path, static_cast<uintmax_t>(kBytes), ec);
    if (ec) GTEST_SKIP() << "cannot make a sparse file: " << ec.message();
    const TokenShape shape = token_file_shape(path, 50257);
    EXPECT_EQ(shape.num_tokens(), kBytes / 2);
    const IndexRange last = split_over_ranks(shape.num_tokens(), 3, 4);
    EXPECT_EQ(read_tokens_range(path, last.end - 1000, 1000, 50257), std::vector<int32_t>(1000, 0));
    std::filesystem::remove(path);
}

// Checks every property windows() promises for one (N, ctx, stride), against the guide's loop run here on
// a label array (-100 = masked) as the guide's Python does it.
void tokens_check_windows(int64_t n, int64_t ctx, int64_t stride) {
    SCOPED_TRACE(::testing::Message() << "N " << n << " ctx " << ctx << " stride " << stride);
    std::vector<std::pair<int64_t, int64_t>> guide;  // (target, begin of its window) the guide scores, in order
    int64_t prev_end = 0;
    for (int64_t begin = 0; begin < n; begin += stride) {
        const int64_t end = std::min(begin + ctx, n), trg_len = end - prev_end;
        for (int64_t t = begin + 1; t < end; ++t)  // labels shifted: position t predicted from t - 1
            if (t >= end - trg_len) guide.emplace_back(t, begin);
        prev_end = end;
        if (end == n) break;
    }
    std::vector<std::pair<int64_t, int64_t>> got;
    for (const EvalWindow& w : windows(n, ctx, stride)) {
        EXPECT_LE(w.end - w.begin, ctx);
        EXPECT_LE(w.end, n);
        EXPECT_GE(w.num_scored, 1);
        EXPECT_LE(w.num_scored, w.end - w.begin - 1);
        for (int64_t t = w.end - w.num_scored; t < w.end; ++t) got.emplace_back(t, w.begin);
    }
    EXPECT_EQ(got, guide);
    if (stride < ctx) {  // every target 1..N-1 exactly once
        ASSERT_EQ(got.size(), static_cast<size_t>(n - 1));
        for (int64_t t = 1; t < n; ++t) EXPECT_EQ(got[static_cast<size_t>(t - 1)].first, t);
    }
}

TEST(Tokens, WindowsFollowTheGuide) {
    // stride == ctx: disjoint windows; the first token of each is context only; the last window shorter.
    const auto ws = windows(11, 4, 4);
    ASSERT_EQ(ws.size(), 3u);
    const int64_t disjoint[3][3] = {{0, 4, 3}, {4, 8, 3}, {8, 11, 2}};  // {begin, end, num_scored}
    for (size_t k = 0; k < 3; ++k) {
        EXPECT_EQ(ws[k].begin, disjoint[k][0]);
        EXPECT_EQ(ws[k].end, disjoint[k][1]);
        EXPECT_EQ(ws[k].num_scored, disjoint[k][2]);
    }
    // stride < ctx: each later window scores only its stride new targets.
    const auto overlap = windows(10, 4, 2);
    ASSERT_EQ(overlap.size(), 4u);
    const int64_t expected[4][3] = {{0, 4, 3}, {2, 6, 2}, {4, 8, 2}, {6, 10, 2}};
    for (size_t k = 0; k < 4; ++k) {
        EXPECT_EQ(overlap[k].begin, expected[k][0]);
        EXPECT_EQ(overlap[k].end, expected[k][1]);
        EXPECT_EQ(overlap[k].num_scored, expected[k][2]);
    }
    // A stream shorter than the context is one window: HF's loss over the whole sequence.
    const auto one = windows(5, 512, 256);
    ASSERT_EQ(one.size(), 1u);
    EXPECT_EQ(one[0].begin, 0);
    EXPECT_EQ(one[0].end, 5);
    EXPECT_EQ(one[0].num_scored, 4);
    // A last window of one token scores nothing and is left out.
    EXPECT_EQ(windows(9, 4, 4).size(), 2u);
    for (int64_t n = 2; n <= 40; ++n)
        for (int64_t ctx = 2; ctx <= 9; ++ctx)
            for (int64_t stride = 1; stride <= ctx; ++stride) tokens_check_windows(n, ctx, stride);
    tokens_check_windows(100001, 1024, 512);
    tokens_check_windows(4097, 1024, 1024);
}

TEST(Tokens, WindowsErrorsNameTheFlag) {
    EXPECT_EQ(tokens_error([] { windows(100, 1, 1); }), "--ctx 1: a window needs at least 2 tokens of context");
    EXPECT_EQ(tokens_error([] { windows(100, 8, 0); }), "--stride 0: must be at least 1");
    EXPECT_EQ(tokens_error([] { windows(100, 8, 9); }),
              "--stride 9 is larger than --ctx 8: tokens between windows go unscored");
    EXPECT_EQ(tokens_error([] { windows(1, 8, 4); }),
              "perplexity needs a stream of at least 2 tokens; this one holds 1");
}

TEST(Tokens, SplitOverRanksCoversEveryItemOnce) {
    for (int num_ranks = 1; num_ranks <= 5; ++num_ranks) {
        for (int64_t count : {int64_t{0}, int64_t{1}, int64_t{2}, int64_t{3}, int64_t{4}, int64_t{7}, int64_t{13},
                              int64_t{100}, int64_t{1} << 62, INT64_MAX}) {
            int64_t next = 0;
            for (int r = 0; r < num_ranks; ++r) {
                const IndexRange range = split_over_ranks(count, r, num_ranks);
                EXPECT_EQ(range.begin, next) << count << " items, rank " << r << " of " << num_ranks;
                EXPECT_GE(range.size(), count / num_ranks);
                EXPECT_LE(range.size() - count / num_ranks, 1);
                if (count <= 100)  // the --input formula, where it cannot overflow
                    EXPECT_EQ(range.begin, r * count / num_ranks);
                next = range.end;
            }
            EXPECT_EQ(next, count);
        }
    }
}

}  // namespace
}  // namespace epmoe
