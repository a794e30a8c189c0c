// write_safetensors: round trips of every dtype, the reference layout (sorted keys, 8-byte padding,
// aligned data), the temporary-then-rename protocol, and writer errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "epmoe/io/safetensors.hpp"
#include "test_safetensors_util.hpp"

namespace {

using epmoe::DType;
using epmoe::SafetensorsFile;
using epmoe::TensorToWrite;
using st_test::expect_error;

// A tensor of `dtype` with recognisable bytes (i * 37 + seed).
TensorToWrite patterned(const std::string& name, DType dtype, std::vector<int64_t> shape, int seed) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    TensorToWrite t{name, dtype, std::move(shape), std::vector<std::byte>(numel * epmoe::dtype_size(dtype))};
    for (size_t i = 0; i < t.bytes.size(); ++i) t.bytes[i] = static_cast<std::byte>(i * 37 + seed);
    if (dtype == DType::kBool)
        for (auto& b : t.bytes) b &= std::byte{1};
    return t;
}

std::vector<TensorToWrite> every_dtype() {
    std::vector<TensorToWrite> out;
    int seed = 0;
    for (DType d : {DType::kBool, DType::kU8, DType::kI8, DType::kI16, DType::kF16, DType::kBF16, DType::kI32,
                    DType::kF32, DType::kI64, DType::kF64}) {
        out.push_back(patterned(std::string("t.") + std::string(epmoe::dtype_name(d)), d, {3, 1 + seed}, seed));
        ++seed;
    }
    out.push_back(patterned("scalar", DType::kF32, {}, 5));
    out.push_back(patterned("empty", DType::kBF16, {0, 7}, 6));
    out.push_back(patterned("odd", DType::kU8, {5}, 7));  // 5 bytes: breaks alignment unless the writer orders data
    return out;
}

TEST(SafetensorsWrite, EveryDtypeRoundTrips) {
    st_test::ScratchDir dir;
    const std::string path = dir.file("all.safetensors");
    const auto tensors = every_dtype();
    const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "quotes \" and \\ and ünï"}};
    epmoe::write_safetensors(path, tensors, meta);
    const auto f = SafetensorsFile::open(path);
    EXPECT_EQ(f.metadata(), meta);
    ASSERT_EQ(f.tensors().size(), tensors.size());
    for (const auto& t : tensors) {
        const auto& info = f.at(t.name);
        EXPECT_EQ(info.dtype, t.dtype) << t.name;
        EXPECT_EQ(info.shape, t.shape) << t.name;
        const auto raw = f.raw(info);
        EXPECT_EQ(std::vector<std::byte>(raw.begin(), raw.end()), t.bytes) << t.name;
    }
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(SafetensorsWrite, ReferenceLayout) {
    st_test::ScratchDir dir;
    const std::string path = dir.file("layout.safetensors");
    epmoe::write_safetensors(path, every_dtype(), {{"format", "pt"}});
    const auto bytes = st_test::read_bytes(path);
    uint64_t header_len = 0;
    std::memcpy(&header_len, bytes.data(), 8);
    EXPECT_EQ(header_len % 8, 0u);
    const std::string header(reinterpret_cast<const char*>(bytes.data()) + 8, header_len);
    const size_t last = header.find_last_not_of(' ');
    EXPECT_EQ(header[last], '}');
    EXPECT_LT(header.size() - last - 1, 8u);  // at most 7 spaces of padding
    // Keys appear sorted in the text.
    const auto parsed = nlohmann::ordered_json::parse(header);
    std::vector<std::string> keys;
    for (const auto& [key, value] : parsed.items()) keys.push_back(key);
    EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
    EXPECT_EQ(keys.size(), every_dtype().size() + 1);
    // Every tensor sits at a multiple of its element size in the file.
    const auto f = SafetensorsFile::open(path);
    for (const auto& t : f.tensors()) EXPECT_EQ((8 + header_len + t.begin) % epmoe::dtype_size(t.dtype), 0u) << t.name;
}

TEST(SafetensorsWrite, FromFloatRoundsToNearestEven) {
    st_test::ScratchDir dir;
    const std::string path = dir.file("f.safetensors");
    const std::vector<float> values = {1.00390625f, 1.01171875f, 0.1f, -3.0f};  // two BF16 ties, then others
    std::vector<int32_t> ids = {0, -7, INT32_MAX, 3};
    epmoe::write_safetensors(
        path, {epmoe::tensor_from_f32("bf", {2, 2}, values, DType::kBF16),
               epmoe::tensor_from_f32("h", {4}, values, DType::kF16), epmoe::tensor_from_f32("f", {4, 1}, values),
               epmoe::tensor_from_i32("ids", {2, 2}, ids)});
    const auto f = SafetensorsFile::open(path);
    std::vector<float> bf(4), h(4), full(4);
    std::vector<int32_t> ids_back(4);
    f.read_f32(f.at("bf"), bf);
    f.read_f32(f.at("h"), h);
    f.read_f32(f.at("f"), full);
    f.read_i32(f.at("ids"), ids_back);
    EXPECT_EQ(bf, (std::vector<float>{1.0f, 1.015625f, 0.10009765625f, -3.0f}));
    EXPECT_EQ(h, (std::vector<float>{1.00390625f, 1.01171875f, 0.0999755859375f, -3.0f}));
    EXPECT_EQ(full, values);
    EXPECT_EQ(ids_back, ids);
    EXPECT_EQ(f.bytes_converted(), 8u + 8u + 16u + 16u);
}

TEST(SafetensorsWrite, BadTensorsFailAndLeaveNoFile) {
    st_test::ScratchDir dir;
    const std::string path = dir.file("bad.safetensors");
    auto t = patterned("w", DType::kF32, {2, 2}, 0);
    expect_error([&] { epmoe::write_safetensors(path, {t, t}); }, {path + ": tensor 'w' is given twice"});
    auto short_t = t;
    short_t.bytes.pop_back();
    expect_error([&] { epmoe::write_safetensors(path, {short_t}); },
                 {path + ": tensor 'w': holds 15 bytes; shape [2, 2] x F32 needs 16"});
    auto neg = t;
    neg.shape = {-2, -2};
    expect_error([&] { epmoe::write_safetensors(path, {neg}); },
                 {path + ": tensor 'w': shape [-2, -2] has a negative"});
    auto reserved = t;
    reserved.name = "__metadata__";
    expect_error([&] { epmoe::write_safetensors(path, {reserved}); }, {"'__metadata__': the name is reserved"});
    auto bad_utf8 = t;
    bad_utf8.name = "\xff";
    expect_error([&] { epmoe::write_safetensors(path, {bad_utf8}); }, {path + ": cannot write the header"});
    EXPECT_FALSE(std::filesystem::exists(path));
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
    const std::vector<float> three(3);
    expect_error(
        [&] {
            epmoe::tensor_from_f32("x", {2, 2}, three);
        },
        {"tensor 'x': shape [2, 2] holds 4 values, not 3"});
}

TEST(SafetensorsWrite, UnwritablePathFailsNamingIt) {
    st_test::ScratchDir dir;
    const std::string path = dir.file("no/such/dir/out.safetensors");
    expect_error([&] { epmoe::write_safetensors(path, {patterned("w", DType::kU8, {1}, 0)}); },
                 {path + ".tmp: cannot create: no such file (ENOENT)"});
}

TEST(SafetensorsWrite, OverwritesAtomically) {
    st_test::ScratchDir dir;
    const std::string path = dir.file("out.safetensors");
    epmoe::write_safetensors(path, {patterned("old", DType::kU8, {4}, 1)});
    // A failing write leaves the old file as it was.
    auto bad = patterned("new", DType::kF32, {4}, 2);
    bad.bytes.resize(3);
    EXPECT_THROW(epmoe::write_safetensors(path, {bad}), epmoe::Error);
    EXPECT_NE(SafetensorsFile::open(path).find("old"), nullptr);
    epmoe::write_safetensors(path, {patterned("new", DType::kF32, {4}, 2)});
    const auto f = SafetensorsFile::open(path);
    EXPECT_EQ(f.names(), std::vector<std::string>{"new"});
}

TEST(SafetensorsWrite, EmptyFileRoundTrips) {
    st_test::ScratchDir dir;
    const std::string path = dir.file("empty.safetensors");
    epmoe::write_safetensors(path, {});
    EXPECT_EQ(st_test::read_bytes(path).size(), 16u);  // length + "{}" padded to 8
    EXPECT_TRUE(SafetensorsFile::open(path).tensors().empty());
}

}  // namespace
