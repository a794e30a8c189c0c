// Replays the fuzz corpus (tests/fuzz/corpus) and any saved crash inputs (tests/fuzz/crashes) through
// parse_safetensors: each must parse or throw epmoe::Error, nothing else. Runs under gcc and ASan too.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "epmoe/io/safetensors.hpp"
#include "test_safetensors_util.hpp"

namespace {

namespace fs = std::filesystem;

struct ReplayCounts {
    int parsed = 0, rejected = 0;
};

// The fuzzer's second reading of an input (tests/fuzz/fuzz_safetensors.cpp): the bytes before the first
// NUL as the header, framed with their length, and the bytes after it as the data.
std::vector<std::byte> frame_at_nul(const std::vector<std::byte>& input) {
    const auto nul = std::find(input.begin(), input.end(), std::byte{0});
    const uint64_t n = static_cast<uint64_t>(nul - input.begin());
    std::vector<std::byte> out(8);
    std::memcpy(out.data(), &n, 8);
    out.insert(out.end(), input.begin(), nul);
    if (nul != input.end()) out.insert(out.end(), nul + 1, input.end());
    return out;
}

// Parses one input; on success converts every float tensor from the validated offsets, so a bad
// offset would read out of bounds (caught by ASan in the sanitizer build).
void replay_bytes(const fs::path& file, const std::vector<std::byte>& bytes, ReplayCounts& counts) {
    try {
        const auto header = epmoe::parse_safetensors(bytes, file.filename().string());
        const std::span<const std::byte> all(bytes);
        for (const auto& t : header.tensors) {
            const auto raw = all.subspan(header.data_start + t.begin, t.nbytes());
            if (!epmoe::is_float_dtype(t.dtype)) continue;
            std::vector<float> out(static_cast<size_t>(t.numel()));
            epmoe::convert_to_f32(t.dtype, raw, out);
        }
        ++counts.parsed;
    } catch (const epmoe::Error& e) {
        EXPECT_EQ(std::string(e.what()).rfind(file.filename().string() + ": ", 0), 0u) << e.what();
        ++counts.rejected;
    } catch (const std::exception& e) {
        ADD_FAILURE() << file << ": a non-epmoe exception escaped: " << e.what();
    }
}

void replay(const fs::path& file, ReplayCounts& counts) {
    const auto bytes = st_test::read_bytes(file.string());
    replay_bytes(file, bytes, counts);
    replay_bytes(file, frame_at_nul(bytes), counts);
}

ReplayCounts replay_dir(const fs::path& dir) {
    ReplayCounts counts;
    if (!fs::exists(dir)) return counts;
    for (const auto& entry : fs::directory_iterator(dir))
        if (entry.is_regular_file() && entry.path().filename().string()[0] != '.') replay(entry.path(), counts);
    return counts;
}

const fs::path kFuzzDir = fs::path(EPMOE_FIXTURES) / ".." / "fuzz";

TEST(SafetensorsCorpus, SeedsParseOrFailCleanly) {
    const auto counts = replay_dir(kFuzzDir / "corpus");
    // The seed corpus holds valid and invalid files in both readings; an empty corpus is a failure.
    EXPECT_GE(counts.parsed, 7);
    EXPECT_GE(counts.rejected, 20);
}

TEST(SafetensorsCorpus, SavedCrashesParseOrFailCleanly) {
    const auto counts = replay_dir(kFuzzDir / "crashes");
    SUCCEED() << counts.parsed << " parsed, " << counts.rejected << " rejected";
}

}  // namespace
