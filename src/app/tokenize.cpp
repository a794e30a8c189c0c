#include "app/tokenize.hpp"

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "epmoe/base/error.hpp"
#include "epmoe/io/safetensors.hpp"
#include "epmoe/text/tokenizer.hpp"
#include "epmoe/text/utf8.hpp"

namespace epmoe {
namespace {

namespace po = boost::program_options;

struct TokenizeArgs {
    std::string model, tokenizer, text, out;
    bool special = true, overwrite = false, quiet = false;
    double progress_interval_s = 1;  // rank 0's progress line on stderr
};

// Little-endian ids with no header (nanoGPT's .bin): uint16 when every id of the vocabulary fits.
void write_bin(const std::string& path, const std::vector<int32_t>& ids, bool narrow) {
    std::ofstream out(path + ".tmp", std::ios::binary | std::ios::trunc);
    if (!out) fail(path, ": cannot write: ", errno_text(errno));
    for (int32_t id : ids) {
        const auto v = static_cast<uint32_t>(id);
        const unsigned char b[4] = {static_cast<unsigned char>(v), static_cast<unsigned char>(v >> 8),
                                    static_cast<unsigned char>(v >> 16), static_cast<unsigned char>(v >> 24)};
        out.write(reinterpret_cast<const char*>(b), narrow ? 2 : 4);
    }
    out.close();
    if (!out) fail(path, ": write failed");
    std::filesystem::rename(path + ".tmp", path);
}

// The size in bytes of the text file at path (an Error naming it when it cannot be read).
uint64_t text_size(const std::string& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) fail(path, ": is a directory, not a file");
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, ": cannot read: ", errno_text(errno));
    in.seekg(0, std::ios::end);
    return static_cast<uint64_t>(in.tellg());
}

// Bytes [offset, offset + length) of the file at path.
std::string read_range(const std::string& path, uint64_t offset, uint64_t length) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, ": cannot read: ", errno_text(errno));
    std::string out(length, '\0');
    in.seekg(static_cast<std::streamoff>(offset));
    in.read(out.data(), static_cast<std::streamsize>(length));
    if (static_cast<uint64_t>(in.gcount()) != length) fail(path, ": read failed at byte ", offset);
    return out;
}

// The tokenizer's first cut at or after byte from of the file (size bytes), {size, size} when none. Read in
// blocks with kContext bytes either side of a cut, so that every rank finds the same cut for the same from.
TextCut find_cut(const Tokenizer& tok, const std::string& path, uint64_t size, uint64_t from) {
    constexpr uint64_t kContext = 1 << 16, kBlock = 4 << 20;
    while (tok.can_cut() && from < size) {
        const uint64_t begin = from > kContext ? from - kContext : 0, end = std::min(size, from + kBlock);
        const std::string block = read_range(path, begin, end - begin);
        const auto cut = tok.next_cut(block, from - begin);
        const uint64_t usable = end == size ? end : end - kContext;  // a cut needs kContext bytes after it
        if (cut && begin + cut->end < usable) return {begin + cut->end, begin + cut->next};
        if (end == size) break;
        from = usable;
    }
    return {size, size};
}

struct PartResult {
    std::vector<int32_t> ids;
    size_t replaced = 0;  // invalid UTF-8 sequences read as U+FFFD
};

// The ids of text (a rank's bytes of the file), cut in ~1 MiB parts where the tokenizer allows; rank 0's progress
// line every interval_s seconds (interval_s <= 0: none).
PartResult encode_range(const Tokenizer& tok, const std::string& text, bool at_start, bool prefix, bool suffix,
                        double interval_s, const std::string& who) {
    constexpr size_t kPart = 1 << 20;
    PartResult r;
    repair_utf8(text, &r.replaced);
    const auto t0 = std::chrono::steady_clock::now();
    double last = 0;
    for (size_t begin = 0, more = 1; more;) {  // once at least: an empty text still takes the special tokens
        std::optional<TextCut> cut;
        if (text.size() - begin > 2 * kPart) cut = tok.next_cut(text, begin + kPart);
        const size_t end = cut ? cut->end : text.size();
        const auto ids = tok.encode_part(std::string_view(text).substr(begin, end - begin), at_start && begin == 0,
                                         prefix && begin == 0, suffix && !cut);
        r.ids.insert(r.ids.end(), ids.begin(), ids.end());
        more = cut.has_value();
        begin = cut ? cut->next : text.size();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (interval_s > 0 && s - last >= interval_s && more) {
            last = s;
            std::fprintf(stderr, "epmoe tokenize: %s%.1f / %.1f MB, %.2f MB/s\n", who.c_str(), begin / 1e6,
                         text.size() / 1e6, begin / 1e6 / s);
        }
    }
    return r;
}

void write_ids(const TokenizeArgs& a, const Tokenizer& tok, const std::vector<int32_t>& ids) {
    if (a.out.ends_with(".safetensors"))
        write_safetensors(a.out, {tensor_from_i32("input_ids", {static_cast<int64_t>(ids.size())}, ids)},
                          {{"producer", "epmoe tokenize"}, {"tokenizer", tok.describe()}});
    else
        write_bin(a.out, ids, tok.vocab_size() <= 65536);
}

// Rank r encodes bytes [cut r, cut r+1) of the text: cut r is the tokenizer's first cut at or after r * size /
// num_ranks (Tokenizer::next_cut: where the parts' ids are provably the whole's), so the ids in rank order are
// the one-rank ids; rank 0's part takes the start-of-text treatment and the prefix, the last rank's the
// suffix. A tokenizer with no exact cut (can_cut false) leaves the whole text to rank 0.
void run_tokenize(const mpi::Comm& world, const TokenizeArgs& a) {
    std::unique_ptr<Tokenizer> tok;
    uint64_t size = 0;
    mpi::all_or_none(world, [&] {
        if (world.rank() == 0 && !a.out.ends_with(".safetensors") && !a.out.ends_with(".bin"))
            fail("epmoe tokenize: --out ", a.out, ": expected FILE.safetensors or FILE.bin");
        if (world.rank() == 0 && !a.overwrite && std::filesystem::exists(a.out))
            fail("epmoe tokenize: --out ", a.out, " exists (give --overwrite to replace it)");
        const bool kind = a.tokenizer == "auto" || a.tokenizer == "json" || a.tokenizer == "sp";
        if (kind && a.model.empty()) fail("epmoe tokenize: give --model DIR (its tokenizer) or --tokenizer PATH");
        tok = kind ? load_tokenizer(a.model, a.tokenizer) : load_tokenizer(a.tokenizer);
        size = text_size(a.text);
    });
    const auto t0 = std::chrono::steady_clock::now();
    const int r = world.rank(), n = world.size();
    PartResult part;
    mpi::all_or_none(world, [&] {
        const auto at = [&](int k) {
            return k == 0 ? TextCut{} : k == n ? TextCut{size, size} : find_cut(*tok, a.text, size, size * k / n);
        };
        const TextCut first = at(r), last = at(r + 1);
        const uint64_t begin = first.next, end = std::max(last.end, begin);
        const bool empty = r > 0 && first == last;
        const std::string text = empty ? std::string() : read_range(a.text, begin, end - begin);
        const double interval = r == 0 && !a.quiet ? a.progress_interval_s : 0;
        part = encode_range(*tok, text, r == 0, a.special && r == 0, a.special && r == n - 1, interval,
                            n > 1 ? "rank 0: " : "");
    });
    const std::vector<int32_t> ids = mpi::gatherv_to_root(world, std::span<const int32_t>(part.ids));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto replaced = mpi::allreduce_one(world, static_cast<uint64_t>(part.replaced), mpi::Op::kSum);
    mpi::all_or_none(world, [&] {
        if (r == 0) write_ids(a, *tok, ids);
    });
    if (r != 0) return;
    const double mb = static_cast<double>(size) / 1e6;
    std::printf("epmoe tokenize: %s: %.3f MB -> %zu tokens in %.3f s (%.2f MB/s, %d rank%s), %s\n", a.text.c_str(), mb,
                ids.size(), seconds, seconds > 0 ? mb / seconds : 0.0, n, n > 1 ? "s" : "", tok->describe().c_str());
    if (n > 1)
        std::printf("  %s: %s\n",
                    tok->can_cut() ? "ranks' parts cut at" : "one rank tokenized it all, as no cut is exact",
                    tok->cut_rule().c_str());
    if (replaced > 0)
        std::printf("  %zu invalid UTF-8 sequences read as U+FFFD (as Python's decode(errors=\"replace\"))\n",
                    static_cast<size_t>(replaced));
    std::printf("  wrote %s (%s)\n", a.out.c_str(),
                a.out.ends_with(".safetensors") ? "input_ids I32 [N]"
                : tok->vocab_size() <= 65536    ? "uint16"
                                                : "uint32");
    std::fflush(stdout);
}

}  // namespace

int tokenize_command(const mpi::Comm& world, const std::vector<std::string>& args) {
    po::options_description desc("options");
    desc.add_options()("help,h", "this help")("model", po::value<std::string>()->default_value(""),
                                              "checkpoint directory: its tokenizer.json, else its tokenizer.model")(
        "tokenizer", po::value<std::string>()->default_value("auto"),
        "auto | json | sp (the --model directory's tokenizer.json / tokenizer.model), or a PATH (directory or file)")(
        "text", po::value<std::string>(),
        "UTF-8 text file, tokenized whole as its bytes are (nothing added or stripped)")(
        "out", po::value<std::string>(),
        "FILE.safetensors (input_ids I32 [N]) or FILE.bin (uint16 when the vocabulary fits, else uint32)")(
        "no-special", "the text's own tokens only (no BOS/EOS of the post-processor or tokenizer_config.json)")(
        "overwrite", "replace an existing --out")("quiet,q", "no progress lines")(
        "progress-interval", po::value<double>()->default_value(1.0),
        "seconds between rank 0's progress lines on stderr (MB done, MB/s)");
    po::variables_map vm;
    mpi::all_or_none(world, [&] {
        try {
            po::store(po::command_line_parser(args).options(desc).run(), vm);
            po::notify(vm);
        } catch (const po::error& e) {
            fail("epmoe tokenize: ", e.what(), " (see epmoe tokenize --help)");
        }
        if (vm.count("help")) return;
        if (!vm.count("text") || !vm.count("out")) fail("epmoe tokenize: give --text FILE and --out FILE");
        if (!(vm["progress-interval"].as<double>() > 0))
            fail("epmoe tokenize: --progress-interval ", vm["progress-interval"].as<double>(), ": expected > 0");
    });
    if (vm.count("help")) {
        if (world.rank() == 0)
            std::cout << "usage: epmoe tokenize --model DIR --text FILE --out FILE [--tokenizer K] [--no-special]\n\n"
                      << "Token ids of a text file through the checkpoint's own tokenizer. Under mpirun each rank\n"
                      << "takes a part of the file cut where the tokenizer's ids provably do not change (the ids\n"
                      << "equal one rank's); rank 0 writes the file.\n\n"
                      << desc;
        return 0;
    }
    const TokenizeArgs a{vm["model"].as<std::string>(), vm["tokenizer"].as<std::string>(),
                         vm["text"].as<std::string>(),  vm["out"].as<std::string>(),
                         vm.count("no-special") == 0,   vm.count("overwrite") > 0,
                         vm.count("quiet") > 0,         vm["progress-interval"].as<double>()};
    run_tokenize(world, a);
    return 0;
}

}  // namespace epmoe
