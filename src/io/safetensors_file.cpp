// SafetensorsFile: a read-only memory map of a validated safetensors file, and typed reads from it.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>
#include <utility>

#include "epmoe/base/error.hpp"
#include "epmoe/io/safetensors.hpp"
#include "safetensors_internal.hpp"

namespace epmoe {

using safetensors_detail::quote;
using safetensors_detail::shape_str;

namespace {


// Closes a file descriptor when it leaves scope.
struct FdGuard {
    int fd;
    ~FdGuard() {
        if (fd >= 0) ::close(fd);
    }
};

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
    FdGuard guard{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (guard.fd < 0) fail(path, ": cannot open: ", errno_text(errno));
    struct stat st {};
    if (::fstat(guard.fd, &st) != 0) fail(path, ": cannot stat: ", errno_text(errno));
    if (!S_ISREG(st.st_mode)) fail(path, ": not a regular file");
    SafetensorsFile file;
    file.path_ = path;
    if (st.st_size > 0) {  // mmap of 0 bytes fails; an empty file is rejected by the parser instead
        void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, guard.fd, 0);
        if (p == MAP_FAILED) fail(path, ": cannot mmap: ", errno_text(errno));
        file.map_ = static_cast<const std::byte*>(p);
        file.map_size_ = static_cast<size_t>(st.st_size);
    }
    file.header_ = parse_safetensors({file.map_, file.map_size_}, path);  // on failure ~file unmaps
    return file;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      map_size_(std::exchange(other.map_size_, 0)),
      header_(std::move(other.header_)),
      bytes_converted_(other.bytes_converted_.load()) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
    if (this != &other) {
        release();
        path_ = std::move(other.path_);
        map_ = std::exchange(other.map_, nullptr);
        map_size_ = std::exchange(other.map_size_, 0);
        header_ = std::move(other.header_);
        bytes_converted_.store(other.bytes_converted_.load());
    }
    return *this;
}

SafetensorsFile::~SafetensorsFile() { release(); }

void SafetensorsFile::release() noexcept {
    if (map_ != nullptr) ::munmap(const_cast<std::byte*>(map_), map_size_);
    map_ = nullptr;
    map_size_ = 0;
}

const TensorInfo& SafetensorsFile::at(std::string_view name) const {
    const TensorInfo* t = find(name);
    if (t == nullptr) fail(path_, ": no tensor ", quote(name), " (the file holds ", header_.tensors.size(), ")");
    return *t;
}

std::vector<std::string> SafetensorsFile::names() const {
    std::vector<std::string> out;
    out.reserve(header_.tensors.size());
    for (const auto& t : header_.tensors) out.push_back(t.name);
    return out;
}

std::span<const std::byte> SafetensorsFile::data_buffer() const {
    EPMOE_ASSERT(map_size_ >= header_.data_start);
    return {map_ + header_.data_start, map_size_ - header_.data_start};
}

std::span<const std::byte> SafetensorsFile::raw(const TensorInfo& info) const {
    const auto data = data_buffer();
    EPMOE_ASSERT(info.begin <= info.end && info.end <= data.size());  // a TensorInfo of another file?
    return data.subspan(info.begin, info.end - info.begin);
}

namespace {

void require_float(const std::string& path, const TensorInfo& info) {
    if (!is_float_dtype(info.dtype))
        fail(path, ": tensor ", quote(info.name), " is ", info.dtype, "; expected F32, BF16 or F16");
}

void require_count(const std::string& path, const TensorInfo& info, uint64_t needed, size_t given) {
    if (needed != given)
        fail(path, ": tensor ", quote(info.name), " (shape ", shape_str(info.shape), "): ", needed,
             " elements to read but the output holds ", given);
}

}  // namespace

void SafetensorsFile::read_f32(const TensorInfo& info, std::span<float> out) const {
    require_float(path_, info);
    require_count(path_, info, static_cast<uint64_t>(info.numel()), out.size());
    const auto src = raw(info);
    convert_to_f32(info.dtype, src, out);
    bytes_converted_.fetch_add(src.size(), std::memory_order_relaxed);
}

void SafetensorsFile::read_rows_f32(const TensorInfo& info, int64_t row_begin, int64_t row_end,
                                    std::span<float> out) const {
    require_float(path_, info);
    if (info.shape.empty()) fail(path_, ": tensor ", quote(info.name), " is a scalar; it has no rows to read");
    const int64_t rows = info.shape[0];
    if (row_begin < 0 || row_begin > row_end || row_end > rows)
        fail(path_, ": tensor ", quote(info.name), " (shape ", shape_str(info.shape), "): rows [", row_begin, ", ",
             row_end, ") are not inside [0, ", rows, ")");
    // numel / rows, not the product of the trailing dims: that product may overflow when rows == 0.
    const uint64_t row_numel = rows == 0 ? 0 : static_cast<uint64_t>(info.numel() / rows);
    const uint64_t count = static_cast<uint64_t>(row_end - row_begin) * row_numel;
    require_count(path_, info, count, out.size());
    const uint64_t elem = dtype_size(info.dtype);
    const auto src = raw(info).subspan(static_cast<uint64_t>(row_begin) * row_numel * elem, count * elem);
    convert_to_f32(info.dtype, src, out);
    bytes_converted_.fetch_add(src.size(), std::memory_order_relaxed);
}

void SafetensorsFile::read_i32(const TensorInfo& info, std::span<int32_t> out) const {
    if (info.dtype != DType::kI32) fail(path_, ": tensor ", quote(info.name), " is ", info.dtype, "; expected I32");
    require_count(path_, info, static_cast<uint64_t>(info.numel()), out.size());
    const auto src = raw(info);
    if (!src.empty()) std::memcpy(out.data(), src.data(), src.size());
    bytes_converted_.fetch_add(src.size(), std::memory_order_relaxed);
}

}  // namespace epmoe
