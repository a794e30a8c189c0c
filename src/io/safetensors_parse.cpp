// Header parsing and validation of safetensors files (parse_safetensors), over bytes in memory.
#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "epmoe/base/error.hpp"
#include "epmoe/io/safetensors.hpp"
#include "safetensors_internal.hpp"

namespace epmoe {

using safetensors_detail::checked_numel;
using safetensors_detail::printable;
using safetensors_detail::quote;
using safetensors_detail::shape_str;

namespace safetensors_detail {

std::string printable(std::string_view text, size_t max_shown) {
    std::string out;
    for (size_t i = 0; i < text.size() && i < max_shown; ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c < 0x20 || c == 0x7f) {
            constexpr const char* kHex = "0123456789abcdef";
            out += "\\x";
            out += kHex[c >> 4];
            out += kHex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    if (text.size() > max_shown) out += "...";
    return out;
}

std::string quote(std::string_view name) {
    std::string out(1, '\'');  // built by appending: GCC 12 warns falsely (-Wrestrict) on "'" + string
    out += printable(name);
    out += '\'';
    return out;
}

std::string shape_str(const std::vector<int64_t>& shape) {
    constexpr size_t kMaxShown = 8;
    std::string out = "[";
    for (size_t i = 0; i < shape.size() && i < kMaxShown; ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
    if (shape.size() > kMaxShown) out += ", ...";
    return out + "]";
}

uint64_t checked_numel(const std::vector<int64_t>& shape, uint64_t elem_size, const std::string& where) {
    // Like the reference: any overflow while folding the product is an error, even if a later dim is 0.
    uint64_t numel = 1;
    for (int64_t dim : shape) {
        if (dim < 0) fail(where, "shape ", shape_str(shape), " has a negative dimension");
        if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dim), &numel) ||
            numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            fail(where, "shape ", shape_str(shape), " has more elements than fit in int64");
    }
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, elem_size, &nbytes))
        fail(where, "shape ", shape_str(shape), " is larger than 2^64 bytes");
    return numel;
}

}  // namespace safetensors_detail

namespace {

// nlohmann::json keeps objects in a std::map (O(log n) lookups); ordered_json's are O(n) per insert,
// which a header with 100k tensors (or a fuzzer) would turn quadratic.
using RawJson = nlohmann::json;

// A valid header nests object > object > array; anything deeper is rejected while parsing.
constexpr int kMaxDepth = 3;

const char* describe(const RawJson& j) {
    switch (j.type()) {
        case RawJson::value_t::object:
            return "an object";
        case RawJson::value_t::array:
            return "an array";
        case RawJson::value_t::string:
            return "a string";
        case RawJson::value_t::boolean:
            return "a boolean";
        case RawJson::value_t::number_float:
            return "a non-integer number";
        case RawJson::value_t::number_integer:
        case RawJson::value_t::number_unsigned:
            return "an integer";
        default:
            return "null";
    }
}

uint64_t read_header_length(std::span<const std::byte> bytes, const std::string& file) {
    if (bytes.size() < 8)
        fail(file, ": file is ", bytes.size(), " bytes, too short for the 8-byte header length (truncated?)");
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);  // little-endian on every host epmoe builds for (see dtype.cpp)
    if (n > kMaxSafetensorsHeaderBytes)
        fail(file, ": header length ", n, " bytes exceeds the 100 MB limit (not a safetensors file?)");
    if (n > bytes.size() - 8)
        fail(file, ": header length ", n, " bytes runs past the end of the file (", bytes.size(),
             " bytes; truncated?)");
    return n;
}

// First pass over the header JSON (SAX, no DOM): syntax, duplicate keys (nlohmann's DOM keeps the last
// one silently) and nesting deeper than a safetensors header has. Linear in the header size; nlohmann's
// callback parser would do this too, but it rescans the parent object after every nested object
// (quadratic: 0.4 s for 9k tensors, minutes for a 100 MB header).
class StructureCheck : public nlohmann::json_sax<RawJson> {
public:
    explicit StructureCheck(const std::string& file) : file_(file) {}

    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }
    bool start_object(std::size_t) override {
        enter();
        keys_.emplace_back();
        return true;
    }
    bool key(string_t& key) override {
        if (!keys_.back().insert(key).second) {
            if (keys_.size() == 1) fail(file_, ": duplicate tensor name ", quote(key), " in the header");
            fail(file_, ": entry ", quote(top_key_), ": duplicate key ", quote(key));
        }
        if (keys_.size() == 1) top_key_ = key;
        return true;
    }
    bool end_object() override {
        keys_.pop_back();
        --depth_;
        return true;
    }
    bool start_array(std::size_t) override {
        enter();
        return true;
    }
    bool end_array() override {
        --depth_;
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const RawJson::exception& e) override {
        fail(file_, ": header is not valid JSON: ", printable(e.what(), 300));
    }

private:
    void enter() {
        if (++depth_ > kMaxDepth)
            fail(file_, ": header nests JSON ", depth_, " levels deep; a safetensors header has at most ", kMaxDepth);
    }

    const std::string& file_;
    int depth_ = 0;
    std::vector<std::unordered_set<std::string>> keys_;  // keys seen in each open object
    std::string top_key_;                                // the current top-level key (tensor name)
};

RawJson parse_header_json(std::span<const std::byte> text, const std::string& file) {
    const auto* first = reinterpret_cast<const char*>(text.data());
    StructureCheck check(file);
    RawJson::sax_parse(first, first + text.size(), &check);  // throws Error on any defect
    try {
        return RawJson::parse(first, first + text.size());
    } catch (const RawJson::exception& e) {  // not expected after the check; kept as a safety net
        fail(file, ": header is not valid JSON: ", printable(e.what(), 300));
    }
}

std::map<std::string, std::string> parse_metadata(const RawJson& j, const std::string& file) {
    if (!j.is_object()) fail(file, ": __metadata__ must be an object of strings, not ", describe(j));
    std::map<std::string, std::string> out;
    for (const auto& [key, value] : j.items()) {
        if (!value.is_string())
            fail(file, ": __metadata__ must map strings to strings; key ", quote(key), " holds ", describe(value));
        out.emplace(key, value.get<std::string>());
    }
    return out;
}

// A JSON array of non-negative integers that fit in int64; `what` names it in messages.
std::vector<int64_t> parse_int_array(const RawJson& j, const std::string& where, const char* what) {
    if (!j.is_array()) fail(where, what, " must be an array of non-negative integers, not ", describe(j));
    std::vector<int64_t> out;
    out.reserve(j.size());
    for (const auto& v : j) {
        if (!v.is_number_integer()) fail(where, what, " must hold non-negative integers, not ", describe(v));
        if (v.is_number_unsigned()) {
            const auto u = v.get<uint64_t>();
            if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                fail(where, what, " value ", u, " is too large");
            out.push_back(static_cast<int64_t>(u));
        } else {
            const auto s = v.get<int64_t>();
            if (s < 0) fail(where, what, " has a negative value ", s);
            out.push_back(s);
        }
    }
    return out;
}

const RawJson& required(const RawJson& entry, const char* key, const std::string& where) {
    const auto it = entry.find(key);
    if (it == entry.end()) fail(where, "missing '", key, "'");
    return *it;
}

TensorInfo parse_tensor(const std::string& name, const RawJson& entry, uint64_t data_size, const std::string& file) {
    const std::string where = cat(file, ": tensor ", quote(name), ": ");
    if (!entry.is_object())
        fail(where, "entry must be an object with dtype, shape and data_offsets, not ", describe(entry));
    for (const auto& [key, value] : entry.items())
        if (key != "dtype" && key != "shape" && key != "data_offsets")
            fail(where, "unknown key ", quote(key), " (expected dtype, shape, data_offsets)");
    TensorInfo t;
    t.name = name;
    const RawJson& dtype = required(entry, "dtype", where);
    if (!dtype.is_string()) fail(where, "dtype must be a string, not ", describe(dtype));
    const auto parsed = dtype_from_name(dtype.get_ref<const std::string&>());
    if (!parsed)
        fail(where, "dtype ", quote(dtype.get_ref<const std::string&>()),
             " is not supported (supported: F32, BF16, F16, F64, I64, I32, I16, I8, U8, BOOL)");
    t.dtype = *parsed;
    t.shape = parse_int_array(required(entry, "shape", where), where, "shape");
    const auto offsets = parse_int_array(required(entry, "data_offsets", where), where, "data_offsets");
    if (offsets.size() != 2) fail(where, "data_offsets must be [begin, end], not ", offsets.size(), " values");
    t.begin = static_cast<uint64_t>(offsets[0]);
    t.end = static_cast<uint64_t>(offsets[1]);
    const std::string range = cat("data_offsets [", t.begin, ", ", t.end, "]");
    if (t.begin > t.end) fail(where, range, " end before they begin");
    if (t.end > data_size)
        fail(where, range, " run past the end of the data buffer (", data_size, " bytes; truncated file?)");
    const uint64_t numel = checked_numel(t.shape, dtype_size(t.dtype), where);
    const uint64_t expected = numel * dtype_size(t.dtype);
    if (t.end - t.begin != expected)
        fail(where, range, " do not match shape ", shape_str(t.shape), " x ", t.dtype, " (", expected, " bytes)");
    return t;
}

// The tensors must cover the data buffer [0, data_size) back to back: no overlap, no hole, no tail.
void check_coverage(const std::vector<TensorInfo>& tensors, uint64_t data_size, const std::string& file) {
    std::vector<const TensorInfo*> order;
    order.reserve(tensors.size());
    for (const auto& t : tensors) order.push_back(&t);
    std::sort(order.begin(), order.end(), [](const TensorInfo* a, const TensorInfo* b) {
        return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    uint64_t pos = 0;
    const TensorInfo* prev = nullptr;
    for (const TensorInfo* t : order) {
        if (t->begin > pos)
            fail(file, ": data bytes [", pos, ", ", t->begin, ") belong to no tensor (a hole before tensor ",
                 quote(t->name), ")");
        if (t->begin < pos)
            fail(file, ": tensor ", quote(t->name), ": data_offsets [", t->begin, ", ", t->end, "] overlap tensor ",
                 quote(prev->name), " [", prev->begin, ", ", prev->end, "]");
        pos = t->end;
        prev = t;
    }
    if (pos != data_size)
        fail(file, ": ", data_size - pos, " extra bytes after the last tensor (the tensors cover ", pos, " of the ",
             data_size, " data bytes)");
}

}  // namespace

int64_t TensorInfo::numel() const {
    int64_t n = 1;
    for (int64_t dim : shape) n *= dim;
    return n;
}

const TensorInfo* ParsedHeader::find(std::string_view name) const {
    const auto it = std::lower_bound(tensors.begin(), tensors.end(), name,
                                     [](const TensorInfo& t, std::string_view n) { return t.name < n; });
    return it != tensors.end() && it->name == name ? &*it : nullptr;
}

ParsedHeader parse_safetensors(std::span<const std::byte> file_bytes, const std::string& name_for_errors) {
    const std::string& file = name_for_errors;
    const uint64_t header_len = read_header_length(file_bytes, file);
    const RawJson header = parse_header_json(file_bytes.subspan(8, header_len), file);
    if (!header.is_object()) fail(file, ": header is ", describe(header), ", not a JSON object");
    ParsedHeader out;
    out.data_start = 8 + header_len;
    const uint64_t data_size = file_bytes.size() - out.data_start;
    for (const auto& [key, value] : header.items()) {  // std::map order: sorted by name
        if (key == "__metadata__")
            out.metadata = parse_metadata(value, file);
        else
            out.tensors.push_back(parse_tensor(key, value, data_size, file));
    }
    check_coverage(out.tensors, data_size, file);
    return out;
}

}  // namespace epmoe
