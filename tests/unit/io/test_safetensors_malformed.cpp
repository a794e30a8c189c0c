// Every malformed safetensors file is rejected with one Error line naming the file (and tensor).
#include <gtest/gtest.h>

#include <chrono>

#include "epmoe/io/safetensors.hpp"
#include "test_safetensors_util.hpp"

namespace {

using epmoe::parse_safetensors;
using st_test::expect_error;
using st_test::make_file;

const std::string kFile = "model.safetensors";

// Parses bytes in memory, expecting an error naming kFile and containing every part.
std::string reject(const std::vector<std::byte>& bytes, std::initializer_list<std::string> parts) {
    const std::string what = expect_error([&] { parse_safetensors(bytes, kFile); }, parts);
    EXPECT_EQ(what.rfind(kFile + ": ", 0), 0u) << "does not start with the file name: " << what;
    return what;
}

std::vector<std::byte> with_tensor(const std::string& entry, size_t data_bytes) {
    return make_file("{\"w\":" + entry + "}", data_bytes);
}

TEST(SafetensorsMalformed, TooShortForHeaderLength) {
    reject(std::vector<std::byte>(5), {"5 bytes, too short"});
    reject({}, {"0 bytes, too short"});
}

TEST(SafetensorsMalformed, HeaderLengthPastEndOfFile) {
    reject(make_file("{}", 0, 1000), {"header length 1000 bytes runs past the end of the file (10 bytes"});
}

TEST(SafetensorsMalformed, HeaderOver100MB) {
    reject(make_file("{}", 0, 100'000'001), {"header length 100000001 bytes exceeds the 100 MB limit"});
    reject(make_file("{}", 0, UINT64_MAX - 1), {"exceeds the 100 MB limit"});
}

TEST(SafetensorsMalformed, BadJson) {
    reject(make_file("{\"w\": ", 0), {"header is not valid JSON"});
    reject(make_file("{\"w\":{}} x", 0), {"header is not valid JSON"});
    reject(make_file(std::string("{\"a\0\":1}", 8), 0), {"header is not valid JSON"});
    reject(make_file("{\"\xff\":1}", 0), {"header is not valid JSON"});  // invalid UTF-8
}

TEST(SafetensorsMalformed, HeaderNotAnObject) {
    reject(make_file("[1, 2]", 0), {"header is an array, not a JSON object"});
    reject(make_file("\"x\"", 0), {"header is a string, not a JSON object"});
    reject(make_file("null", 0), {"header is null, not a JSON object"});
}

TEST(SafetensorsMalformed, EntryNotAnObject) {
    reject(with_tensor("[1]", 0), {"tensor 'w': entry must be an object", "not an array"});
}

TEST(SafetensorsMalformed, UnknownDtypeIsNamed) {
    reject(with_tensor(R"({"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]})", 2),
           {"tensor 'w': dtype 'F8_E4M3' is not supported", "F32, BF16"});
    reject(with_tensor(R"({"dtype":"f32","shape":[1],"data_offsets":[0,4]})", 4), {"tensor 'w': dtype 'f32'"});
    reject(with_tensor(R"({"dtype":4,"shape":[1],"data_offsets":[0,4]})", 4),
           {"tensor 'w': dtype must be a string, not an integer"});
}

TEST(SafetensorsMalformed, MissingFields) {
    reject(with_tensor(R"({"shape":[1],"data_offsets":[0,4]})", 4), {"tensor 'w': missing 'dtype'"});
    reject(with_tensor(R"({"dtype":"F32","data_offsets":[0,4]})", 4), {"tensor 'w': missing 'shape'"});
    reject(with_tensor(R"({"dtype":"F32","shape":[1]})", 4), {"tensor 'w': missing 'data_offsets'"});
}

TEST(SafetensorsMalformed, UnknownFieldInEntry) {
    reject(with_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4],"stride":[1]})", 4),
           {"tensor 'w': unknown key 'stride'"});
}

TEST(SafetensorsMalformed, BadShapes) {
    reject(with_tensor(R"({"dtype":"F32","shape":[2,-3],"data_offsets":[0,0]})", 0),
           {"tensor 'w': shape has a negative value -3"});
    reject(with_tensor(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})", 8),
           {"tensor 'w': shape must hold non-negative integers, not a non-integer number"});
    reject(with_tensor(R"({"dtype":"F32","shape":"2","data_offsets":[0,8]})", 8),
           {"tensor 'w': shape must be an array"});
    reject(with_tensor(R"({"dtype":"F32","shape":[[2]],"data_offsets":[0,8]})", 8), {"nests JSON 4 levels deep"});
}

TEST(SafetensorsMalformed, SizeOverflowInShapeProduct) {
    // 2^32 * 2^32 = 2^64 elements: the product overflows.
    reject(with_tensor(R"({"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]})", 0),
           {"tensor 'w': shape [4294967296, 4294967296] has more elements than fit in int64"});
    // 3 * 2^62 elements fit in uint64 but not in int64.
    reject(with_tensor(R"({"dtype":"U8","shape":[4611686018427387904,3],"data_offsets":[0,0]})", 0),
           {"tensor 'w': shape [4611686018427387904, 3] has more elements than fit in int64"});
    // 2^62 elements fit in int64, but 2^62 * 8 bytes overflow uint64.
    reject(with_tensor(R"({"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]})", 0),
           {"tensor 'w': shape [4611686018427387904] is larger than 2^64 bytes"});
    // A dim above int64's range.
    reject(with_tensor(R"({"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,0]})", 0),
           {"tensor 'w': shape value 9223372036854775808 is too large"});
    // Overflow before a zero dim still counts (as in the reference implementation).
    reject(with_tensor(R"({"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]})", 0),
           {"more elements than fit in int64"});
}

TEST(SafetensorsMalformed, OffsetsNotMatchingShapeTimesDtype) {
    const std::string what = reject(
        make_file(R"({"model.layers.0.mlp.gate.weight":{"dtype":"F32","shape":[8,16],"data_offsets":[0,100]}})", 100),
        {});
    EXPECT_EQ(what,
              "model.safetensors: tensor 'model.layers.0.mlp.gate.weight': data_offsets [0, 100] do not match "
              "shape [8, 16] x F32 (512 bytes)");
    reject(with_tensor(R"({"dtype":"BF16","shape":[],"data_offsets":[0,4]})", 4),
           {"tensor 'w': data_offsets [0, 4] do not match shape [] x BF16 (2 bytes)"});
}

TEST(SafetensorsMalformed, BadOffsets) {
    reject(with_tensor(R"({"dtype":"U8","shape":[4],"data_offsets":[0,4]})", 3),
           {"tensor 'w': data_offsets [0, 4] run past the end of the data buffer (3 bytes"});
    reject(with_tensor(R"({"dtype":"U8","shape":[0],"data_offsets":[4,0]})", 4),
           {"tensor 'w': data_offsets [4, 0] end before they begin"});
    reject(with_tensor(R"({"dtype":"U8","shape":[4],"data_offsets":[0]})", 4),
           {"tensor 'w': data_offsets must be [begin, end], not 1 values"});
    reject(with_tensor(R"({"dtype":"U8","shape":[4],"data_offsets":[0,-4]})", 4),
           {"tensor 'w': data_offsets has a negative value -4"});
    reject(with_tensor(R"({"dtype":"U8","shape":[4],"data_offsets":[0,18446744073709551615]})", 4),
           {"tensor 'w': data_offsets value 18446744073709551615 is too large"});
}

TEST(SafetensorsMalformed, TruncatedData) {
    // A valid two-tensor file with its last byte cut off.
    auto bytes = make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"F16","shape":[3],"data_offsets":[8,14]}})",
                           14);
    EXPECT_NO_THROW(parse_safetensors(bytes, kFile));
    bytes.pop_back();
    reject(bytes, {"tensor 'b': data_offsets [8, 14] run past the end of the data buffer (13 bytes; truncated"});
}

TEST(SafetensorsMalformed, OverlappingOffsets) {
    reject(make_file(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                     R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                     6),
           {"tensor 'b': data_offsets [2, 6] overlap tensor 'a' [0, 4]"});
    // An empty tensor inside another one's bytes overlaps too (the reference rejects it as well).
    reject(make_file(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                     R"("e":{"dtype":"U8","shape":[0],"data_offsets":[2,2]}})",
                     4),
           {"tensor 'e': data_offsets [2, 2] overlap tensor 'a'"});
}

TEST(SafetensorsMalformed, HoleBetweenTensors) {
    reject(make_file(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                     R"("b":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}})",
                     8),
           {"data bytes [4, 6) belong to no tensor (a hole before tensor 'b')"});
    reject(with_tensor(R"({"dtype":"U8","shape":[2],"data_offsets":[2,4]})", 4),
           {"data bytes [0, 2) belong to no tensor"});
}

TEST(SafetensorsMalformed, ExtraTrailingBytes) {
    reject(with_tensor(R"({"dtype":"U8","shape":[4],"data_offsets":[0,4]})", 7),
           {"3 extra bytes after the last tensor (the tensors cover 4 of the 7 data bytes)"});
    reject(make_file("{}", 1), {"1 extra bytes after the last tensor"});
}

TEST(SafetensorsMalformed, DuplicateNames) {
    reject(make_file(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                     R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                     2),
           {"duplicate tensor name 'w'"});
    reject(with_tensor(R"({"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]})", 1),
           {"entry 'w': duplicate key 'dtype'"});
    reject(make_file(R"({"__metadata__":{"k":"a","k":"b"}})", 0), {"entry '__metadata__': duplicate key 'k'"});
}

TEST(SafetensorsMalformed, MetadataNotAStringMap) {
    reject(make_file(R"({"__metadata__":{"k":1}})", 0),
           {"__metadata__ must map strings to strings; key 'k' holds an integer"});
    reject(make_file(R"({"__metadata__":{"k":null}})", 0), {"key 'k' holds null"});
    reject(make_file(R"({"__metadata__":["k"]})", 0), {"__metadata__ must be an object of strings, not an array"});
    reject(make_file(R"({"__metadata__":{"k":{"x":"y"}}})", 0), {"key 'k' holds an object"});
}

TEST(SafetensorsMalformed, ControlBytesInNamesStayOnOneLine) {
    const std::string what = reject(with_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})", 3), {});
    EXPECT_NE(what.find("tensor 'w'"), std::string::npos);
    reject(make_file(R"({"a\nb":{"dtype":"U8","shape":[1],"data_offsets":[0,2]}})", 2), {"tensor 'a\\x0ab'"});
}

TEST(SafetensorsMalformed, OpenNamesThePath) {
    st_test::ScratchDir dir;
    const std::string path = dir.file("bad.safetensors");
    st_test::write_bytes(path, with_tensor(R"({"dtype":"Q4","shape":[1],"data_offsets":[0,1]})", 1));
    const std::string what =
        expect_error([&] { epmoe::SafetensorsFile::open(path); }, {path + ": tensor 'w': dtype 'Q4' is not supported"});
    EXPECT_EQ(what.rfind(path, 0), 0u);
    st_test::write_bytes(path, {});
    expect_error([&] { epmoe::SafetensorsFile::open(path); }, {path + ": file is 0 bytes, too short"});
    expect_error([&] { epmoe::SafetensorsFile::open(dir.file("missing.safetensors")); },
                 {dir.file("missing.safetensors") + ": cannot open: no such file (ENOENT)"});
    expect_error([&] { epmoe::SafetensorsFile::open(dir.file("")); }, {"not a regular file"});
}

// Things that look odd but are valid safetensors.
TEST(SafetensorsValid, EdgeCasesParse) {
    EXPECT_NO_THROW(parse_safetensors(make_file("{}", 0), kFile));
    EXPECT_NO_THROW(parse_safetensors(make_file("{}       ", 0), kFile));  // reference-style space padding
    EXPECT_NO_THROW(parse_safetensors(make_file(R"({"__metadata__":{}})", 0), kFile));
    const std::string header = R"({"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                               R"("e1":{"dtype":"F32","shape":[0,3],"data_offsets":[4,4]},)"
                               R"("e2":{"dtype":"I64","shape":[5,0],"data_offsets":[4,4]},)"
                               R"("u":{"dtype":"U8","shape":[3],"data_offsets":[4,7]}}   )";
    const auto h = parse_safetensors(make_file(header, 7), kFile);
    ASSERT_EQ(h.tensors.size(), 4u);
    EXPECT_EQ(h.find("s")->numel(), 1);
    EXPECT_EQ(h.find("e1")->numel(), 0);
    EXPECT_EQ(h.find("e2")->numel(), 0);
    EXPECT_EQ(h.find("u")->begin, 4u);
    EXPECT_EQ(h.find("nope"), nullptr);
    EXPECT_EQ(h.data_start, 8u + header.size());
}

}  // namespace

// nlohmann's callback parser rescans the parent object after each nested one: quadratic, minutes for this
// header. The parser must stay linear (about a second here even under ASan).
TEST(SafetensorsValid, LargeHeaderParsesInLinearTime) {
    std::string header = "{";
    for (int i = 0; i < 100'000; ++i)
        header += (i ? ",\"t" : "\"t") + std::to_string(i) + R"(":{"dtype":"U8","shape":[0],"data_offsets":[0,0]})";
    header += "}";
    const auto start = std::chrono::steady_clock::now();
    const auto h = parse_safetensors(make_file(header, 0), kFile);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(h.tensors.size(), 100'000u);
    EXPECT_LT(seconds, 20.0);
}
