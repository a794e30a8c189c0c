// safetensors files (https://github.com/huggingface/safetensors): a validating reader over a read-only
// memory map, a header parser over a byte buffer (what the fuzzer drives), and a writer.
// Layout: 8-byte little-endian header length N, N bytes of JSON header (padded with spaces), then the
// data buffer, which the tensors' data_offsets [begin, end) cover exactly, back to back, unaligned.
// Pure I/O and compute: no MPI. Every bad-input failure is an epmoe::Error naming the file (and tensor).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "epmoe/base/dtype.hpp"

namespace epmoe {

// Headers longer than this are rejected (the reference implementation's limit), in bytes.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// One tensor of a validated header.
struct TensorInfo {
    std::string name;
    DType dtype = DType::kF32;
    std::vector<int64_t> shape;   // every dim >= 0; [] for a scalar
    uint64_t begin = 0, end = 0;  // byte range [begin, end) in the data buffer (not the file)

    // Product of the dims (1 for a scalar, 0 if any dim is 0). Fits in int64 (checked by the parser).
    int64_t numel() const;
    // end - begin == numel() * dtype_size(dtype).
    uint64_t nbytes() const { return end - begin; }
};

// A validated header: the tensors, the metadata and where the data buffer starts.
struct ParsedHeader {
    std::vector<TensorInfo> tensors;              // sorted by name; names unique
    std::map<std::string, std::string> metadata;  // the "__metadata__" entry, or empty
    uint64_t data_start = 0;                      // file offset of the data buffer: 8 + N

    // The tensor named `name`, or nullptr.
    const TensorInfo* find(std::string_view name) const;
};

// Parses and validates a whole safetensors file held in memory (header, offsets, coverage, size). Stricter
// than the reference on duplicate keys, unknown keys in a tensor entry and JSON nested too deep.
// @param file_bytes      the complete file; only the header bytes are read
// @param name_for_errors prefix of every error message (normally the path)
ParsedHeader parse_safetensors(std::span<const std::byte> file_bytes, const std::string& name_for_errors);

// A safetensors file, memory-mapped read-only and validated on open. Move-only; unmaps on destruction.
// Reads are const and may run from several threads at once.
class SafetensorsFile {
public:
    // Maps and validates `path`; fails (Error naming the path) if it is unreadable or malformed.
    static SafetensorsFile open(const std::string& path);

    SafetensorsFile(SafetensorsFile&& other) noexcept;
    SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;
    ~SafetensorsFile();

    // The path given to open().
    const std::string& path() const { return path_; }
    // The tensor named `name`, or nullptr.
    const TensorInfo* find(std::string_view name) const { return header_.find(name); }
    // The tensor named `name`; fails naming the file and the tensor if it is absent.
    const TensorInfo& at(std::string_view name) const;
    // All tensors, sorted by name.
    const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
    // All tensor names, sorted.
    std::vector<std::string> names() const;
    // The "__metadata__" string map (empty if the file has none).
    const std::map<std::string, std::string>& metadata() const { return header_.metadata; }

    // Converts the whole tensor (F32, BF16 or F16) to float.
    // @param out size info.numel(); fails naming file and tensor on a size or dtype mismatch.
    void read_f32(const TensorInfo& info, std::span<float> out) const;
    // Converts rows [row_begin, row_end) along dim 0 of a tensor of rank >= 1 (F32, BF16 or F16),
    // touching only those rows' bytes. @param out size (row_end - row_begin) * (numel / shape[0]).
    void read_rows_f32(const TensorInfo& info, int64_t row_begin, int64_t row_end, std::span<float> out) const;
    // Copies an I32 tensor. @param out size info.numel().
    void read_i32(const TensorInfo& info, std::span<int32_t> out) const;
    // The tensor's raw little-endian bytes inside the map (any alignment: copy out with memcpy).
    std::span<const std::byte> raw(const TensorInfo& info) const;
    // Bytes of the file read so far through read_f32/read_rows_f32/read_i32 (source bytes, not floats).
    uint64_t bytes_converted() const { return bytes_converted_.load(std::memory_order_relaxed); }

private:
    SafetensorsFile() = default;
    std::span<const std::byte> data_buffer() const;
    void release() noexcept;

    std::string path_;
    const std::byte* map_ = nullptr;  // the whole file, mmap'ed PROT_READ; nullptr for an empty file
    size_t map_size_ = 0;             // bytes
    ParsedHeader header_;
    mutable std::atomic<uint64_t> bytes_converted_{0};
};

// One tensor for write_safetensors.
struct TensorToWrite {
    std::string name;
    DType dtype = DType::kF32;
    std::vector<int64_t> shape;
    std::vector<std::byte> bytes;  // numel(shape) * dtype_size(dtype) bytes, little-endian
};

// A tensor of `dtype` (F32, BF16 or F16) holding `values` rounded to nearest even.
// @param values size = product of shape
TensorToWrite tensor_from_f32(std::string name, std::vector<int64_t> shape, std::span<const float> values,
                              DType dtype = DType::kF32);

// An I32 tensor holding `values`. @param values size = product of shape
TensorToWrite tensor_from_i32(std::string name, std::vector<int64_t> shape, std::span<const int32_t> values);

// Writes a safetensors file in the reference layout: header keys sorted (byte order), header padded with
// spaces to a multiple of 8, data ordered by element size (largest first) then name, so every tensor is
// aligned to its element size in the file. Writes path + ".tmp", fsyncs it, then renames it to path.
// Fails naming the path (and tensor) on a bad tensor (duplicate name, size mismatch) or an I/O error.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace epmoe
