#include "app/tokenize.hpp"

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "epmoe/base/error.hpp"
#include "epmoe/io/safetensors.hpp"
#include "epmoe/text/tokenizer.hpp"
#include "epmoe/text/utf8.hpp"

namespace epmoe {
namespace {

namespace po = boost::program_options;

struct TokenizeArgs {
    std::string model, tokenizer, text, out;
    bool special = true, overwrite = false;
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

void run_tokenize(const TokenizeArgs& a) {
    const bool kind = a.tokenizer == "auto" || a.tokenizer == "json" || a.tokenizer == "sp";
    if (kind && a.model.empty()) fail("epmoe tokenize: give --model DIR (its tokenizer) or --tokenizer PATH");
    const bool st = a.out.ends_with(".safetensors");
    if (!st && !a.out.ends_with(".bin"))
        fail("epmoe tokenize: --out ", a.out, ": expected FILE.safetensors or FILE.bin");
    if (!a.overwrite && std::filesystem::exists(a.out))
        fail("epmoe tokenize: --out ", a.out, " exists (give --overwrite to replace it)");
    const auto tokenizer = kind ? load_tokenizer(a.model, a.tokenizer) : load_tokenizer(a.tokenizer);
    const std::string bytes = read_file_bytes(a.text);
    size_t replaced = 0;
    repair_utf8(bytes, &replaced);
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tokenizer->encode(bytes, a.special);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const bool narrow = tokenizer->vocab_size() <= 65536;
    if (st) {
        write_safetensors(a.out, {tensor_from_i32("input_ids", {static_cast<int64_t>(ids.size())}, ids)},
                          {{"producer", "epmoe tokenize"}, {"tokenizer", tokenizer->describe()}});
    } else {
        write_bin(a.out, ids, narrow);
    }
    const double mb = static_cast<double>(bytes.size()) / 1e6;
    std::printf("epmoe tokenize: %s: %.3f MB -> %zu tokens in %.3f s (%.2f MB/s, one rank), %s\n", a.text.c_str(), mb,
                ids.size(), seconds, seconds > 0 ? mb / seconds : 0.0, tokenizer->describe().c_str());
    if (replaced > 0)
        std::printf("  %zu invalid UTF-8 sequences read as U+FFFD (as Python's decode(errors=\"replace\"))\n",
                    replaced);
    std::printf("  wrote %s (%s)\n", a.out.c_str(), st ? "input_ids I32 [N]" : narrow ? "uint16" : "uint32");
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
        "overwrite", "replace an existing --out");
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
    });
    if (vm.count("help")) {
        if (world.rank() == 0)
            std::cout << "usage: epmoe tokenize --model DIR --text FILE --out FILE [--tokenizer K] [--no-special]\n\n"
                      << "Token ids of a text file through the checkpoint's own tokenizer (one stream; rank 0).\n\n"
                      << desc;
        return 0;
    }
    const TokenizeArgs a{vm["model"].as<std::string>(), vm["tokenizer"].as<std::string>(), vm["text"].as<std::string>(),
                         vm["out"].as<std::string>(),   vm.count("no-special") == 0,       vm.count("overwrite") > 0};
    mpi::all_or_none(world, [&] {
        if (world.rank() == 0) run_tokenize(a);
    });
    return 0;
}

}  // namespace epmoe
