// write_safetensors: the reference layout, written to a temporary name, fsync'ed, then renamed.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>

#include "epmoe/base/error.hpp"
#include "epmoe/io/safetensors.hpp"
#include "safetensors_internal.hpp"

namespace epmoe {

using safetensors_detail::checked_numel;
using safetensors_detail::printable;
using safetensors_detail::quote;
using safetensors_detail::shape_str;

namespace {


// Checks one tensor against its shape and dtype; returns its size in bytes.
uint64_t check_tensor(const TensorToWrite& t, const std::string& path) {
    const std::string where = cat(path, ": tensor ", quote(t.name), ": ");
    if (t.name == "__metadata__") fail(where, "the name is reserved for the metadata");
    const uint64_t nbytes = checked_numel(t.shape, dtype_size(t.dtype), where) * dtype_size(t.dtype);
    if (t.bytes.size() != nbytes)
        fail(where, "holds ", t.bytes.size(), " bytes; shape ", shape_str(t.shape), " x ", t.dtype, " needs ", nbytes);
    return nbytes;
}

// The header JSON (keys sorted), padded with spaces to a multiple of 8 bytes as the reference does.
// `order` is the data order; the offsets follow it.
std::string make_header(const std::vector<const TensorToWrite*>& order,
                        const std::map<std::string, std::string>& metadata, const std::string& path) {
    nlohmann::json header = nlohmann::json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t offset = 0;
    for (const TensorToWrite* t : order) {
        const uint64_t end = offset + t->bytes.size();
        header[t->name] = {
            {"dtype", std::string(dtype_name(t->dtype))}, {"shape", t->shape}, {"data_offsets", {offset, end}}};
        offset = end;
    }
    std::string text;
    try {
        text = header.dump();
    } catch (const nlohmann::json::exception& e) {  // names or metadata that are not valid UTF-8
        fail(path, ": cannot write the header: ", printable(e.what()));
    }
    text.append((8 - text.size() % 8) % 8, ' ');
    return text;
}

void write_all(int fd, const void* data, size_t size, const std::string& tmp) {
    const auto* p = static_cast<const char*>(data);
    while (size > 0) {
        const ssize_t n = ::write(fd, p, size);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail(tmp, ": cannot write: ", errno_text(errno));
        p += n;
        size -= static_cast<size_t>(n);
    }
}

void write_file(const std::string& tmp, const std::string& header, const std::vector<const TensorToWrite*>& order) {
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail(tmp, ": cannot create: ", errno_text(errno));
    try {
        const uint64_t header_len = header.size();
        write_all(fd, &header_len, 8, tmp);  // little-endian host (see dtype.cpp)
        write_all(fd, header.data(), header.size(), tmp);
        for (const TensorToWrite* t : order) write_all(fd, t->bytes.data(), t->bytes.size(), tmp);
        if (::fsync(fd) != 0) fail(tmp, ": cannot fsync: ", errno_text(errno));
    } catch (...) {
        ::close(fd);
        throw;
    }
    if (::close(fd) != 0) fail(tmp, ": cannot close: ", errno_text(errno));
}

}  // namespace

TensorToWrite tensor_from_f32(std::string name, std::vector<int64_t> shape, std::span<const float> values,
                              DType dtype) {
    EPMOE_ASSERT(is_float_dtype(dtype));
    const uint64_t numel = checked_numel(shape, dtype_size(dtype), cat("tensor ", quote(name), ": "));
    if (values.size() != numel)
        fail("tensor ", quote(name), ": shape ", shape_str(shape), " holds ", numel, " values, not ", values.size());
    TensorToWrite t{std::move(name), dtype, std::move(shape), std::vector<std::byte>(numel * dtype_size(dtype))};
    convert_from_f32(values, dtype, t.bytes);
    return t;
}

TensorToWrite tensor_from_i32(std::string name, std::vector<int64_t> shape, std::span<const int32_t> values) {
    const uint64_t numel = checked_numel(shape, 4, cat("tensor ", quote(name), ": "));
    if (values.size() != numel)
        fail("tensor ", quote(name), ": shape ", shape_str(shape), " holds ", numel, " values, not ", values.size());
    TensorToWrite t{std::move(name), DType::kI32, std::move(shape), std::vector<std::byte>(numel * 4)};
    if (numel > 0) std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
    return t;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    std::set<std::string_view> names;
    std::vector<const TensorToWrite*> order;
    for (const auto& t : tensors) {
        check_tensor(t, path);
        if (!names.insert(t.name).second) fail(path, ": tensor ", quote(t.name), " is given twice");
        order.push_back(&t);
    }
    // Largest elements first, then by name: with the 8-byte-padded header every tensor is aligned.
    std::sort(order.begin(), order.end(), [](const TensorToWrite* a, const TensorToWrite* b) {
        const size_t sa = dtype_size(a->dtype), sb = dtype_size(b->dtype);
        return sa != sb ? sa > sb : a->name < b->name;
    });
    const std::string header = make_header(order, metadata, path);
    const std::string tmp = path + ".tmp";
    try {
        write_file(tmp, header, order);
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = errno_text(errno);
        ::unlink(tmp.c_str());
        fail(path, ": cannot rename ", tmp, " to it: ", why);
    }
}

}  // namespace epmoe
