// Helpers for the safetensors unit tests: a scratch directory, raw file building, error expectations.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <string>
#include <vector>

#include "epmoe/base/error.hpp"

namespace st_test {

// A fresh directory under gtest's TempDir, removed with its contents at destruction.
class ScratchDir {
public:
    ScratchDir() {
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        path_ = std::filesystem::path(::testing::TempDir()) /
                (std::string("epmoe_st_") + info->test_suite_name() + "_" + info->name());
        std::filesystem::remove_all(path_);
        std::filesystem::create_directories(path_);
    }
    ~ScratchDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
    // dir/name as a string.
    std::string file(const std::string& name) const { return (path_ / name).string(); }

private:
    std::filesystem::path path_;
};

// The bytes of a safetensors file: an 8-byte little-endian length (header.size() unless given),
// the header text, then data_bytes bytes of data (0, 1, 2, ...).
inline std::vector<std::byte> make_file(const std::string& header, size_t data_bytes,
                                        uint64_t header_len = UINT64_MAX) {
    if (header_len == UINT64_MAX) header_len = header.size();
    std::vector<std::byte> out(8 + header.size() + data_bytes);
    std::memcpy(out.data(), &header_len, 8);
    std::memcpy(out.data() + 8, header.data(), header.size());
    for (size_t i = 0; i < data_bytes; ++i) out[8 + header.size() + i] = static_cast<std::byte>(i);
    return out;
}

inline void write_bytes(const std::string& path, const std::vector<std::byte>& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(out.good()) << path;
}

inline std::vector<std::byte> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> out(chars.size());
    if (!chars.empty()) std::memcpy(out.data(), chars.data(), chars.size());
    return out;
}

// Runs fn, expects an epmoe::Error whose message is one line containing every part; returns it.
template <typename Fn>
std::string expect_error(Fn&& fn, std::initializer_list<std::string> parts) {
    try {
        fn();
    } catch (const epmoe::Error& e) {
        const std::string what = e.what();
        for (const auto& part : parts)
            EXPECT_NE(what.find(part), std::string::npos) << "'" << part << "' not in: " << what;
        EXPECT_EQ(what.find('\n'), std::string::npos) << "not one line: " << what;
        return what;
    }
    ADD_FAILURE() << "no epmoe::Error thrown";
    return {};
}

}  // namespace st_test
