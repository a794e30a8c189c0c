// Token files for the whole-model commands (`epmoe eval --tokens FILE`, `epmoe generate --tokens PROMPTS`), and
// the two ways those commands cut them up: perplexity windows over a stream, and a share of items per rank.
// No MPI: callers wrap the reads in mpi::all_or_none. Files are memory-mapped: a read touches only the pages
// of the ids it returns, so a rank that reads its part of a 10 GB stream reads only that part.
//
// Formats, told apart by the file's extension:
// - `.safetensors`: a tensor `input_ids`, dtype I32 or I64 (I64 values must fit in int32), shape [N] (one
//   stream) or [B, S] (B sequences of S tokens, row-major). Other tensors in the file are ignored.
// - `.bin`: little-endian ids with no header, as nanoGPT writes them (data/*/prepare.py: np.memmap of uint16,
//   no header; train.py reads it back the same way), or llm.c's token shards, which dev/data/data_common.py
//   (write_datafile) starts with a header of 256 little-endian int32: [0] magic, [1] version, [2] the token
//   count, the rest 0; magic 20240520 version 1 ("gpt-2") holds uint16 ids, magic 20240801 version 7
//   ("llama-3") uint32 ids (llmc/dataloader.h checks the magic, the version and that the size is
//   1024 + count * width). A file of at least 1024 bytes whose first two int32 are one of those pairs is read
//   as llm.c's; a known magic with another version, or llm.c's eval-file magic 20240522, is an error; any
//   other file is raw ids. Sources checked: karpathy/llm.c dev/data/data_common.py and llmc/dataloader.h
//   (commit f1e2ace, May 2025), karpathy/nanoGPT data/openwebtext/prepare.py.
// Every failure is an epmoe::Error naming the file (and the tensor), the position and the value at fault.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace epmoe {

// A whole token file, every id checked to lie in [0, vocab_size).
struct TokenFile {
    std::vector<int32_t> ids;   // [num_sequences, seq_len], row-major; [1, N] for a stream
    int64_t num_sequences = 0;  // B; 1 for a stream
    int64_t seq_len = 0;        // S; N for a stream
    bool is_stream = true;      // a [N] tensor or a .bin file (false for a [B, S] tensor, even with B = 1)
};

// The shape of a token file, from its header alone (no id is read or checked).
struct TokenShape {
    int64_t num_sequences = 0;  // B; 1 for a stream
    int64_t seq_len = 0;        // S; N for a stream
    bool is_stream = true;
    std::string format;  // for logs: "safetensors I64", "raw uint16", "llm.c uint32 (magic 20240801, version 7)"

    // B * S: the positions read_tokens_range() takes.
    int64_t num_tokens() const { return num_sequences * seq_len; }
};

// Reads and checks a whole token file (format above).
// @param vocab_size ids must be in [0, vocab_size); 1 <= vocab_size <= 2^31
// @param width      id width of a .bin file: "uint16", "uint32" or "auto" (uint16 when vocab_size <= 65536,
//                   else uint32). An llm.c header states its width: "auto" follows it, a different explicit
//                   width is an error. Ignored for safetensors, whose dtype states the width.
TokenFile read_tokens(const std::string& path, int64_t vocab_size, const std::string& width = "auto");

// The shape of a token file without reading its ids: what a rank needs to pick its part. Arguments as read_tokens.
TokenShape token_file_shape(const std::string& path, int64_t vocab_size, const std::string& width = "auto");

// Reads and checks only the ids at flat positions [first, first + count) of a token file (row-major for a
// [B, S] tensor: sequences [b0, b1) are first = b0 * S, count = (b1 - b0) * S), touching only their bytes.
// Equal to read_tokens(...).ids[first, first + count). Fails naming the file if the range is not inside it.
// @return [count] ids
std::vector<int32_t> read_tokens_range(const std::string& path, int64_t first, int64_t count, int64_t vocab_size,
                                       const std::string& width = "auto");

// One window of a perplexity evaluation over a stream of N tokens (see windows()).
struct EvalWindow {
    int64_t begin = 0;       // the model reads tokens [begin, end), end - begin <= ctx, end <= N
    int64_t end = 0;
    int64_t num_scored = 0;  // the targets scored: tokens [end - num_scored, end), each predicted from the token
                             // before it (inside the window: num_scored <= end - begin - 1)
};

// The windows of a perplexity evaluation of a stream of N = stream_length tokens, as the Hugging Face guide
// ("Perplexity of fixed-length models") runs them: for begin = 0, stride, 2 stride, ...: end = min(begin + ctx,
// N), the labels are the end - prev_end tokens not labelled by an earlier window, and the model's shift leaves
// the window's first token without a prediction; stop once end = N. So stride == ctx gives disjoint windows
// in which the first token of each is context only (HF's loss over each window), and stride < ctx scores every
// token 1..N-1 once, each with at least ctx - stride tokens before it where the stream allows. A window that
// would score nothing (one token) is left out. A stream shorter than ctx is one window.
// Fails naming --ctx or --stride when ctx < 2, stride < 1 or stride > ctx, and when N < 2 (nothing to score).
std::vector<EvalWindow> windows(int64_t stream_length, int64_t ctx, int64_t stride);

// A half-open range of items [begin, end).
struct IndexRange {
    int64_t begin = 0;
    int64_t end = 0;
    int64_t size() const { return end - begin; }
};

// The items of rank `rank` when `count` items are split over num_ranks ranks in rank order, as --input splits
// its rows (src/io/input.cpp): [floor(rank * count / num_ranks), floor((rank + 1) * count / num_ranks)).
// Sizes differ by at most 1; every item belongs to exactly one rank. Exact for any count >= 0 (no overflow).
IndexRange split_over_ranks(int64_t count, int rank, int num_ranks);

}  // namespace epmoe
