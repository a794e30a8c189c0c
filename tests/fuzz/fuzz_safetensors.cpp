// libFuzzer target: parse_safetensors over arbitrary bytes. Every input must either parse into a header
// whose tensors tile the data buffer exactly, or throw epmoe::Error; anything else (a crash, a sanitizer
// report, another exception type escaping) is a finding. Built by tests/fuzz/CMakeLists.txt (EPMOE_FUZZ=ON).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "epmoe/base/error.hpp"
#include "epmoe/io/safetensors.hpp"

namespace {

// The input's bytes up to its first NUL as the header (a JSON header holds no raw NUL), the bytes after
// it as the data, framed with the right 8-byte length: lets mutations edit the JSON freely without
// breaking the length field.
std::vector<std::byte> frame_at_nul(std::span<const std::byte> input) {
    size_t header_len = 0;
    while (header_len < input.size() && input[header_len] != std::byte{0}) ++header_len;
    const uint64_t n = header_len;
    std::vector<std::byte> out(8);
    std::memcpy(out.data(), &n, 8);
    out.insert(out.end(), input.begin(), input.begin() + static_cast<std::ptrdiff_t>(header_len));
    if (header_len < input.size())
        out.insert(out.end(), input.begin() + static_cast<std::ptrdiff_t>(header_len) + 1, input.end());
    return out;
}

// A broken invariant of a successfully parsed header: make it a crash libFuzzer reports.
void check(bool ok) {
    if (!ok) __builtin_trap();
}

void check_header(const epmoe::ParsedHeader& header, std::span<const std::byte> bytes) {
    check(header.data_start >= 8 && header.data_start <= bytes.size());
    uint64_t covered = 0;
    for (size_t i = 0; i < header.tensors.size(); ++i) {
        const auto& t = header.tensors[i];
        check(i == 0 || header.tensors[i - 1].name < t.name);
        check(header.find(t.name) == &t);
        check(t.numel() >= 0 && t.nbytes() == static_cast<uint64_t>(t.numel()) * epmoe::dtype_size(t.dtype));
        covered += t.nbytes();
        // Touch the tensor's bytes through the validated offsets: ASan flags any out-of-bounds range.
        const auto raw = bytes.subspan(header.data_start + t.begin, t.nbytes());
        if (epmoe::is_float_dtype(t.dtype)) {
            std::vector<float> out(static_cast<size_t>(t.numel()));
            epmoe::convert_to_f32(t.dtype, raw, out);
        }
    }
    check(covered == bytes.size() - header.data_start);
}

void parse_one(std::span<const std::byte> bytes) {
    try {
        check_header(epmoe::parse_safetensors(bytes, "fuzz.safetensors"), bytes);
    } catch (const epmoe::Error&) {
        // Rejected cleanly: the expected outcome for most inputs.
    }
}

}  // namespace

// Each input is tried twice: as a whole file, and framed at its first NUL (see frame_at_nul).
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    parse_one(bytes);
    const auto framed = frame_at_nul(bytes);
    parse_one(framed);
    return 0;
}
