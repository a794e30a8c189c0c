// Token files (safetensors input_ids, raw and llm.c .bin), perplexity windows and the split over ranks.
// The formats and the sources they were checked against are in include/epmoe/io/tokens.hpp.
#include "epmoe/io/tokens.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <type_traits>

#include "epmoe/base/error.hpp"
#include "epmoe/io/safetensors.hpp"
#include "safetensors_internal.hpp"

namespace epmoe {

// The io library is one unity-build unit: these helpers live in their own namespace so that no name meets
// another file's.
namespace token_files {
namespace {

using safetensors_detail::quote;
using safetensors_detail::shape_str;

static_assert(std::endian::native == std::endian::little, "token files are read as little-endian in place");

// llm.c's token shards (dev/data/data_common.py HEADERS_INFO): a 256-int32 header, then the ids.
constexpr int64_t kLlmcHeaderBytes = 256 * 4;
constexpr int32_t kLlmcGpt2Magic = 20240520, kLlmcGpt2Version = 1;      // uint16 ids
constexpr int32_t kLlmcLlama3Magic = 20240801, kLlmcLlama3Version = 7;  // uint32 ids
constexpr int32_t kLlmcEvalMagic = 20240522;                            // write_evalfile: not a token stream
constexpr const char* kTensor = "input_ids";

// The element type of the ids in a file.
enum class IdType { kU16, kU32, kI32, kI64 };

size_t id_bytes(IdType type) { return type == IdType::kU16 ? 2 : type == IdType::kI64 ? 8 : 4; }

const char* id_name(IdType type) {
    switch (type) {
        case IdType::kU16:
            return "uint16";
        case IdType::kU32:
            return "uint32";
        case IdType::kI32:
            return "I32";
        case IdType::kI64:
            return "I64";
    }
    return "?";
}

// The width argument; nullopt for "auto".
std::optional<IdType> parse_width(const std::string& width) {
    if (width == "uint16") return IdType::kU16;
    if (width == "uint32") return IdType::kU32;
    if (width == "auto") return std::nullopt;
    fail("token width ", quote(width), " is not uint16, uint32 or auto");
}

void check_vocab_size(int64_t vocab_size) {
    constexpr int64_t kMax = int64_t{1} << 31;  // ids are int32
    if (vocab_size < 1 || vocab_size > kMax) fail("vocab_size ", vocab_size, " is not in [1, 2^31]");
}

// A whole file mapped read-only (nothing is mapped for an empty file), unmapped on destruction.
class TokenFileMap {
public:
    TokenFileMap() = default;
    TokenFileMap(const TokenFileMap&) = delete;
    TokenFileMap& operator=(const TokenFileMap&) = delete;
    ~TokenFileMap() {
        if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
    }

    void map(const std::string& path) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) fail(path, ": cannot open: ", errno_text(errno));
        struct stat st {};
        const bool ok = ::fstat(fd, &st) == 0;
        const int stat_errno = errno;
        void* p = nullptr;
        if (ok && S_ISREG(st.st_mode) && st.st_size > 0)
            p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
        const int map_errno = errno;
        ::close(fd);  // the mapping outlives the descriptor
        if (!ok) fail(path, ": cannot stat: ", errno_text(stat_errno));
        if (!S_ISREG(st.st_mode)) fail(path, ": not a regular file");
        if (p == MAP_FAILED) fail(path, ": cannot mmap: ", errno_text(map_errno));
        data_ = static_cast<const std::byte*>(p);
        size_ = static_cast<size_t>(st.st_size);
    }

    std::span<const std::byte> bytes() const { return {data_, data_ == nullptr ? 0 : size_}; }

private:
    const std::byte* data_ = nullptr;
    size_t size_ = 0;  // bytes
};

// What an llm.c header says.
struct LlmcHeader {
    int32_t magic = 0, version = 0;
    int64_t num_tokens = 0;
    IdType type = IdType::kU16;
};

// llm.c's header, if the file starts with one; nullopt for a raw file. Fails on llm.c magics it cannot read.
std::optional<LlmcHeader> read_llmc_header(std::span<const std::byte> file, const std::string& path) {
    if (file.size() < static_cast<size_t>(kLlmcHeaderBytes)) return std::nullopt;
    int32_t h[3];
    std::memcpy(h, file.data(), sizeof h);
    if (h[0] == kLlmcGpt2Magic && h[1] == kLlmcGpt2Version) return LlmcHeader{h[0], h[1], h[2], IdType::kU16};
    if (h[0] == kLlmcLlama3Magic && h[1] == kLlmcLlama3Version) return LlmcHeader{h[0], h[1], h[2], IdType::kU32};
    if (h[0] == kLlmcEvalMagic)
        fail(path, ": an llm.c multiple-choice eval file (magic ", h[0], "), not a token stream");
    if (h[0] == kLlmcGpt2Magic || h[0] == kLlmcLlama3Magic)
        fail(path, ": llm.c header with magic ", h[0], " and version ", h[1], "; epmoe reads magic ", kLlmcGpt2Magic,
             " version ", kLlmcGpt2Version, " (uint16) and magic ", kLlmcLlama3Magic, " version ", kLlmcLlama3Version,
             " (uint32)");
    return std::nullopt;
}

// The ids of an open token file: where they are, their type and shape, and how messages name them.
struct TokenView {
    std::string where;                 // message prefix: "PATH" or "PATH: tensor 'input_ids'"
    std::string at;                    // before a position: "PATH: position" or "PATH: tensor 'input_ids' position"
    std::span<const std::byte> bytes;  // [num_tokens * id_bytes(type)], little-endian, any alignment
    IdType type = IdType::kU16;
    TokenShape shape;
};

// An open token file of either format. Not movable: view_.bytes points into st_ or map_.
class TokenReader {
public:
    TokenReader(const std::string& path, int64_t vocab_size, const std::string& width) {
        check_vocab_size(vocab_size);
        const std::optional<IdType> asked = parse_width(width);
        if (path.ends_with(".safetensors")) {
            open_safetensors(path);
        } else if (path.ends_with(".bin")) {
            open_flat(path, asked.value_or(vocab_size <= 65536 ? IdType::kU16 : IdType::kU32), asked.has_value());
        } else {
            fail(path, ": not a token file: expected .safetensors (tensor input_ids) or .bin (uint16/uint32 ids)");
        }
    }
    TokenReader(const TokenReader&) = delete;
    TokenReader& operator=(const TokenReader&) = delete;

    const TokenView& view() const { return view_; }

private:
    void open_safetensors(const std::string& path);
    void open_flat(const std::string& path, IdType type, bool type_given);

    std::optional<SafetensorsFile> st_;
    TokenFileMap map_;
    TokenView view_;
};

void TokenReader::open_safetensors(const std::string& path) {
    st_.emplace(SafetensorsFile::open(path));
    const TensorInfo* t = st_->find(kTensor);
    if (t == nullptr) {
        std::string names;
        for (const auto& info : st_->tensors()) names += (names.empty() ? "" : ", ") + quote(info.name);
        fail(path, ": no tensor ", quote(kTensor), " (the file holds ", names.empty() ? "no tensors" : names, ")");
    }
    view_.where = cat(path, ": tensor ", quote(kTensor));
    view_.at = view_.where + " position";
    if (t->dtype != DType::kI32 && t->dtype != DType::kI64)
        fail(view_.where, " has dtype ", t->dtype, "; expected I32 or I64");
    if (t->shape.size() != 1 && t->shape.size() != 2)
        fail(view_.where, " has shape ", shape_str(t->shape),
             "; expected [N] (one stream) or [B, S] (B sequences of S tokens)");
    if (t->numel() == 0) fail(view_.where, " has shape ", shape_str(t->shape), ": no tokens");
    view_.type = t->dtype == DType::kI32 ? IdType::kI32 : IdType::kI64;
    view_.bytes = st_->raw(*t);
    view_.shape.is_stream = t->shape.size() == 1;
    view_.shape.num_sequences = view_.shape.is_stream ? 1 : t->shape[0];
    view_.shape.seq_len = t->shape.back();
    view_.shape.format = cat("safetensors ", id_name(view_.type));
}

void TokenReader::open_flat(const std::string& path, IdType type, bool type_given) {
    map_.map(path);
    std::span<const std::byte> ids = map_.bytes();
    view_.where = path;
    view_.at = path + ": position";
    view_.shape.format = cat("raw ", id_name(type));
    if (const std::optional<LlmcHeader> h = read_llmc_header(ids, path)) {
        const std::string header = cat("llm.c header (magic ", h->magic, ", version ", h->version, ")");
        if (type_given && type != h->type)
            fail(path, ": the ", header, " says the ids are ", id_name(h->type), ", not ", id_name(type));
        type = h->type;
        if (h->num_tokens <= 0) fail(path, ": the ", header, " counts ", h->num_tokens, " tokens: no tokens");
        const uint64_t expected = kLlmcHeaderBytes + static_cast<uint64_t>(h->num_tokens) * id_bytes(type);
        if (ids.size() != expected)
            fail(path, ": the ", header, " counts ", h->num_tokens, " ", id_name(type), " tokens (", expected,
                 " bytes with the header), but the file has ", ids.size(), " bytes");
        ids = ids.subspan(kLlmcHeaderBytes);
        view_.shape.format = cat("llm.c ", id_name(type), " (magic ", h->magic, ", version ", h->version, ")");
    }
    if (ids.empty()) fail(path, ": no tokens (0 bytes)");
    if (ids.size() % id_bytes(type) != 0)
        fail(path, ": ", ids.size(), " bytes is not a whole number of ", id_name(type), " ids (", id_bytes(type),
             " bytes each)");
    view_.type = type;
    view_.bytes = ids;
    view_.shape.is_stream = true;
    view_.shape.num_sequences = 1;
    view_.shape.seq_len = static_cast<int64_t>(ids.size() / id_bytes(type));
}

// Fails for the id `value` at flat position `pos`, naming [b, s] in a 2-D tensor; an I64 value that does not
// fit in int32 says so.
[[noreturn]] void bad_id(const TokenView& v, int64_t pos, int64_t value, int64_t vocab_size) {
    const std::string at = v.shape.is_stream
                               ? cat(v.at, " ", pos)
                               : cat(v.at, " ", pos, " [", pos / v.shape.seq_len, ", ", pos % v.shape.seq_len, "]");
    if (v.type == IdType::kI64 &&
        (value < std::numeric_limits<int32_t>::min() || value > std::numeric_limits<int32_t>::max()))
        fail(at, " holds ", value, ", which does not fit in int32");
    fail(at, " holds id ", value, ", not in [0, ", vocab_size, ") (the model's vocab_size)");
}

// Converts and checks out.size() ids of type T from flat position `first` on.
template <typename T>
void decode_as(const TokenView& v, int64_t first, std::span<int32_t> out, int64_t vocab_size) {
    const std::byte* src = v.bytes.data() + static_cast<size_t>(first) * sizeof(T);
    for (size_t i = 0; i < out.size(); ++i) {
        T value;
        std::memcpy(&value, src + i * sizeof(T), sizeof(T));
        const auto wide = static_cast<int64_t>(value);  // every T fits in int64
        if (wide < 0 || wide >= vocab_size) [[unlikely]]
            bad_id(v, first + static_cast<int64_t>(i), wide, vocab_size);
        out[i] = static_cast<int32_t>(wide);
    }
}

std::vector<int32_t> decode(const TokenView& v, int64_t first, int64_t count, int64_t vocab_size) {
    const int64_t total = v.shape.num_tokens();
    if (first < 0 || count < 0 || first > total - count)
        fail(v.where, ": positions [", first, ", ", first + count, ") are not inside its ", total, " tokens");
    std::vector<int32_t> out(static_cast<size_t>(count));  // [count]
    switch (v.type) {
        case IdType::kU16:
            decode_as<uint16_t>(v, first, out, vocab_size);
            break;
        case IdType::kU32:
            decode_as<uint32_t>(v, first, out, vocab_size);
            break;
        case IdType::kI32:
            decode_as<int32_t>(v, first, out, vocab_size);
            break;
        case IdType::kI64:
            decode_as<int64_t>(v, first, out, vocab_size);
            break;
    }
    return out;
}

}  // namespace
}  // namespace token_files

TokenFile read_tokens(const std::string& path, int64_t vocab_size, const std::string& width) {
    const token_files::TokenReader reader(path, vocab_size, width);
    const token_files::TokenView& v = reader.view();
    TokenFile file;
    file.ids = token_files::decode(v, 0, v.shape.num_tokens(), vocab_size);
    file.num_sequences = v.shape.num_sequences;
    file.seq_len = v.shape.seq_len;
    file.is_stream = v.shape.is_stream;
    return file;
}

TokenShape token_file_shape(const std::string& path, int64_t vocab_size, const std::string& width) {
    return token_files::TokenReader(path, vocab_size, width).view().shape;
}

std::vector<int32_t> read_tokens_range(const std::string& path, int64_t first, int64_t count, int64_t vocab_size,
                                       const std::string& width) {
    const token_files::TokenReader reader(path, vocab_size, width);
    return token_files::decode(reader.view(), first, count, vocab_size);
}

std::vector<EvalWindow> windows(int64_t stream_length, int64_t ctx, int64_t stride) {
    if (ctx < 2) fail("--ctx ", ctx, ": a window needs at least 2 tokens of context");
    if (stride < 1) fail("--stride ", stride, ": must be at least 1");
    if (stride > ctx) fail("--stride ", stride, " is larger than --ctx ", ctx, ": tokens between windows go unscored");
    if (stream_length < 2) fail("perplexity needs a stream of at least 2 tokens; this one holds ", stream_length);
    std::vector<EvalWindow> out;
    int64_t prev_end = 0;
    for (int64_t begin = 0; begin < stream_length; begin += stride) {
        const int64_t end = std::min(begin + ctx, stream_length);
        // the guide's trg_len = end - prev_end labels, of which the window's first token has no prediction
        const int64_t num_scored = std::min(end - prev_end, end - begin - 1);
        if (num_scored > 0) out.push_back({begin, end, num_scored});
        prev_end = end;
        if (end == stream_length) break;
    }
    return out;
}

IndexRange split_over_ranks(int64_t count, int rank, int num_ranks) {
    EPMOE_ASSERT(count >= 0 && num_ranks >= 1 && rank >= 0 && rank < num_ranks);
    // floor(r * count / P) = r * q + floor(r * rem / P) with count = q * P + rem: no product exceeds P^2 or count.
    const int64_t q = count / num_ranks, rem = count % num_ranks;
    const auto start = [&](int64_t r) { return r * q + r * rem / num_ranks; };
    return {start(rank), start(rank + 1)};
}

}  // namespace epmoe
