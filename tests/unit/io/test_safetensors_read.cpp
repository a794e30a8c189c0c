// Reading safetensors files that numpy wrote (tests/fixtures/safetensors/make_fixtures.py), row slices,
// the bytes_converted counter, and read errors.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>

#include "epmoe/io/safetensors.hpp"
#include "test_safetensors_util.hpp"

namespace {

using epmoe::DType;
using epmoe::SafetensorsFile;
using st_test::expect_error;

const std::string kMixed = std::string(EPMOE_FIXTURES) + "/safetensors/mixed.safetensors";

// The tensor's raw bytes as T values (memcpy: the fixture's tensors are misaligned on purpose).
template <typename T>
std::vector<T> raw_as(const SafetensorsFile& f, const std::string& name) {
    const auto raw = f.raw(f.at(name));
    std::vector<T> out(raw.size() / sizeof(T));
    if (!out.empty()) std::memcpy(out.data(), raw.data(), raw.size());
    return out;
}

std::vector<float> read_all(const SafetensorsFile& f, const std::string& name) {
    const auto& t = f.at(name);
    std::vector<float> out(static_cast<size_t>(t.numel()));
    f.read_f32(t, out);
    return out;
}

std::vector<uint32_t> bits(const std::vector<float>& v) {
    std::vector<uint32_t> out;
    for (float x : v) out.push_back(std::bit_cast<uint32_t>(x));
    return out;
}

TEST(SafetensorsRead, NumpyFixtureHeader) {
    const auto f = SafetensorsFile::open(kMixed);
    EXPECT_EQ(f.names(), (std::vector<std::string>{"a.u8", "b.f32", "c.bf16", "c.bf16.as_f32", "d.f16", "d.f16.as_f32",
                                                   "e.i32", "f.i64", "g.i16", "h.i8", "i.bool", "j.f64", "k.scalar",
                                                   "l.empty", "m.rows_bf16"}));
    EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"made_by", "make_fixtures.py"}}));
    EXPECT_EQ(f.at("b.f32").shape, (std::vector<int64_t>{3, 4}));
    EXPECT_EQ(f.at("b.f32").begin, 3u);  // misaligned: after the 3-byte U8 tensor
    EXPECT_EQ(f.at("c.bf16").dtype, DType::kBF16);
    EXPECT_EQ(f.at("k.scalar").shape, std::vector<int64_t>{});
    EXPECT_EQ(f.at("k.scalar").numel(), 1);
    EXPECT_EQ(f.at("l.empty").numel(), 0);
    EXPECT_EQ(f.find("missing"), nullptr);
}

TEST(SafetensorsRead, NumpyFixtureFloatValues) {
    const auto f = SafetensorsFile::open(kMixed);
    const auto b = read_all(f, "b.f32");
    ASSERT_EQ(b.size(), 12u);
    for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(b[i], static_cast<float>(i) * 0.5f - 1.25f) << i;
    // BF16 and F16 against the float32 values numpy computed (bitwise: -inf and subnormals included).
    EXPECT_EQ(bits(read_all(f, "c.bf16")), bits(read_all(f, "c.bf16.as_f32")));
    EXPECT_EQ(bits(read_all(f, "d.f16")), bits(read_all(f, "d.f16.as_f32")));
    EXPECT_EQ(read_all(f, "c.bf16")[1], -2.5f);
    EXPECT_EQ(read_all(f, "d.f16")[1], -65504.0f);
    EXPECT_EQ(read_all(f, "k.scalar"), std::vector<float>{3.5f});
    EXPECT_TRUE(read_all(f, "l.empty").empty());
}

TEST(SafetensorsRead, NumpyFixtureIntegerAndOtherValues) {
    const auto f = SafetensorsFile::open(kMixed);
    std::vector<int32_t> i32(4);
    f.read_i32(f.at("e.i32"), i32);
    EXPECT_EQ(i32, (std::vector<int32_t>{-1, 0, INT32_MAX, INT32_MIN}));
    EXPECT_EQ(raw_as<int64_t>(f, "f.i64"), (std::vector<int64_t>{INT64_MIN, int64_t{1} << 40}));
    EXPECT_EQ(raw_as<int16_t>(f, "g.i16"), (std::vector<int16_t>{-32768, 7}));
    EXPECT_EQ(raw_as<int8_t>(f, "h.i8"), (std::vector<int8_t>{-128, 127}));
    EXPECT_EQ(raw_as<uint8_t>(f, "i.bool"), (std::vector<uint8_t>{1, 0, 1}));
    EXPECT_EQ(raw_as<uint8_t>(f, "a.u8"), (std::vector<uint8_t>{1, 2, 255}));
    EXPECT_EQ(raw_as<double>(f, "j.f64"), (std::vector<double>{1.0 / 3.0, -1e300}));
}

TEST(SafetensorsRead, RowsTouchOnlyTheirBytes) {
    const auto f = SafetensorsFile::open(kMixed);
    const auto& t = f.at("m.rows_bf16");  // [4, 3] BF16, value i = 1 + i / 128
    EXPECT_EQ(f.bytes_converted(), 0u);
    std::vector<float> rows(6);
    f.read_rows_f32(t, 1, 3, rows);
    for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i], 1.0f + static_cast<float>(i + 3) / 128.0f) << i;
    EXPECT_EQ(f.bytes_converted(), 2u * 3u * 2u);  // two rows of three BF16
    std::vector<float> none;
    f.read_rows_f32(t, 4, 4, none);
    EXPECT_EQ(f.bytes_converted(), 12u);
    std::vector<float> all(12);
    f.read_f32(t, all);
    EXPECT_EQ(f.bytes_converted(), 12u + 24u);
    EXPECT_EQ(std::vector<float>(all.begin() + 3, all.begin() + 9), rows);
}

TEST(SafetensorsRead, ExpertRowsOfA3DTensor) {
    // [num_experts = 8, d_ff = 3, d_model = 5] F16: a rank reading experts 2..4 converts only their bytes.
    st_test::ScratchDir dir;
    const std::string path = dir.file("experts.safetensors");
    std::vector<float> w(8 * 3 * 5);
    for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i);
    epmoe::write_safetensors(path, {epmoe::tensor_from_f32("experts", {8, 3, 5}, w, DType::kF16)});
    const auto f = SafetensorsFile::open(path);
    std::vector<float> mine(3 * 15);
    f.read_rows_f32(f.at("experts"), 2, 5, mine);
    EXPECT_EQ(mine, std::vector<float>(w.begin() + 30, w.begin() + 75));
    EXPECT_EQ(f.bytes_converted(), 3u * 15u * 2u);
}

TEST(SafetensorsRead, ReadErrorsNameFileAndTensor) {
    const auto f = SafetensorsFile::open(kMixed);
    std::vector<float> out(4);
    expect_error([&] { f.read_f32(f.at("e.i32"), out); },
                 {kMixed + ": tensor 'e.i32' is I32; expected F32, BF16 or F16"});
    expect_error([&] { f.read_f32(f.at("b.f32"), out); },
                 {kMixed + ": tensor 'b.f32' (shape [3, 4]): 12 elements to read but the output holds 4"});
    expect_error([&] { f.read_rows_f32(f.at("b.f32"), 2, 4, out); },
                 {kMixed + ": tensor 'b.f32' (shape [3, 4]): rows [2, 4) are not inside [0, 3)"});
    expect_error([&] { f.read_rows_f32(f.at("b.f32"), -1, 0, out); }, {"rows [-1, 0) are not inside"});
    expect_error([&] { f.read_rows_f32(f.at("k.scalar"), 0, 1, out); }, {"tensor 'k.scalar' is a scalar"});
    std::vector<int32_t> ints(4);
    expect_error([&] { f.read_i32(f.at("f.i64"), ints); }, {"tensor 'f.i64' is I64; expected I32"});
    expect_error([&] { f.at("model.layers.0.mlp.gate.weight"); },
                 {kMixed + ": no tensor 'model.layers.0.mlp.gate.weight'"});
    EXPECT_EQ(f.bytes_converted(), 0u);  // failed reads convert nothing
}

TEST(SafetensorsRead, MovedFileStillReads) {
    auto f = SafetensorsFile::open(kMixed);
    SafetensorsFile g = std::move(f);
    EXPECT_EQ(read_all(g, "k.scalar"), std::vector<float>{3.5f});
    auto h = SafetensorsFile::open(std::string(EPMOE_FIXTURES) + "/safetensors/f16_reference.safetensors");
    h = std::move(g);
    EXPECT_EQ(h.path(), kMixed);
    EXPECT_EQ(read_all(h, "k.scalar"), std::vector<float>{3.5f});
    EXPECT_EQ(h.bytes_converted(), 8u);
}

}  // namespace
