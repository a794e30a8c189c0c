#include "app/train_data.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <unordered_map>

#include "app/text_input.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/io/tokens.hpp"
#include "epmoe/ops/loss.hpp"
#include "epmoe/text/tokenizer.hpp"

namespace epmoe {
namespace {

namespace fs = std::filesystem;

// The corpus' bytes: a file, or every regular file of a folder whose name has no '.' (fortunes' text files,
// not their .dat indexes or .u8 links), in name order.
std::vector<int32_t> corpus_bytes(const std::string& path) {
    std::vector<std::string> files;
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        for (const auto& e : fs::directory_iterator(path, ec))
            if (e.is_regular_file() && !e.is_symlink() && e.path().filename().string().find('.') == std::string::npos)
                files.push_back(e.path().string());
        std::sort(files.begin(), files.end());
    } else {
        files.push_back(path);
    }
    if (!fs::exists(path, ec))
        fail("train.corpus ", path, ": no such file or folder (Debian's fortunes package installs ",
             "/usr/share/games/fortunes; or give --data FILE)");
    std::vector<int32_t> out;
    for (const std::string& f : files)
        for (unsigned char c : read_file_bytes(f)) out.push_back(c);
    if (out.empty()) fail("train.corpus ", path, ": no text in it");
    return out;
}

// The ids of the text file at path (key: the config key that named it, for errors): the checkpoint's tokenizer's
// (--model DIR, or text.tokenizer a path), with its special tokens as text.special_tokens says; with no
// tokenizer (the byte-level synthetic model) the text's bytes, as train.corpus reads them.
std::vector<int32_t> text_ids(const Config& config, const std::string& path, int vocab_size, const char* key) {
    const std::string& t = config.text.tokenizer;
    const bool has_tokenizer = !config.model.path.empty() || !(t == "auto" || t == "json" || t == "sp");
    std::vector<int32_t> ids;
    try {
        const std::string bytes = read_file_bytes(path);
        if (has_tokenizer) {
            ids = open_tokenizer(config)->encode(bytes, config.text.special_tokens);
        } else {
            if (vocab_size < 256) fail("model.vocab_size ", vocab_size, ": the bytes of a text need 256 ids");
            ids.assign(bytes.begin(), bytes.end());
            for (int32_t& id : ids) id &= 0xFF;  // char may be signed
        }
    } catch (const Error& e) {
        fail(key, " ", path, ": ", e.what());
    }
    for (int32_t id : ids)
        if (id >= vocab_size)
            fail(key, " ", path, ": token id ", id, " outside the model's vocabulary of ", vocab_size);
    if (ids.empty()) fail(key, " ", path, ": holds no tokens");
    return ids;
}

void check_length(const std::vector<int32_t>& s, int64_t ctx, const std::string& what) {
    if (static_cast<int64_t>(s.size()) < ctx + 1)
        fail(what, " holds ", s.size(), " tokens: shorter than one window of --ctx ", ctx, " + 1");
}

TrainSequence window(const std::vector<int32_t>& s, int64_t start, int64_t ctx) {
    TrainSequence q;
    q.ids.assign(s.begin() + start, s.begin() + start + ctx);
    q.targets.assign(s.begin() + start + 1, s.begin() + start + ctx + 1);
    return q;
}

}  // namespace

TrainData load_train_data(const Config& config, int vocab_size) {
    const TrainConfig& t = config.train;
    TrainData d;
    if (!t.text.empty()) {
        d.train = text_ids(config, t.text, vocab_size, "train.text");
        d.source = t.text;
    } else if (t.data.empty()) {
        if (vocab_size < 256) fail("model.vocab_size ", vocab_size, ": the byte corpus needs 256 ids (or --data)");
        d.train = corpus_bytes(t.corpus);
        d.source = "bytes of " + t.corpus;
    } else {
        d.train = read_tokens(t.data, vocab_size, config.text.token_dtype).ids;
        d.source = t.data;
    }
    std::string val_source = d.source;  // where the validation stream came from, for its length check
    if (!t.val_data.empty()) {
        d.val = read_tokens(t.val_data, vocab_size, config.text.token_dtype).ids;
        val_source = t.val_data;
    } else if (!t.val_text.empty()) {
        d.val = text_ids(config, t.val_text, vocab_size, "train.val_text");
        val_source = t.val_text;
    } else if (t.sampler == "sequential") {
        d.val = d.train;  // a checking hook's rows: nothing held out, validated on the same tokens
    } else {
        const size_t held = static_cast<size_t>(static_cast<double>(d.train.size()) * t.val_fraction);
        d.val.assign(d.train.end() - static_cast<std::ptrdiff_t>(held), d.train.end());
        d.train.resize(d.train.size() - held);
        val_source =
            cat("the last ", t.val_fraction, " of ", d.source, ", train.val_fraction; or give --val-data FILE");
    }
    check_length(d.train, config.text.ctx, "the training stream of " + d.source);
    check_length(d.val, config.text.ctx, "the validation stream (" + val_source + ")");
    return d;
}

std::vector<TrainSequence> sample_batch(const std::vector<int32_t>& stream, int64_t ctx, int batch, uint64_t seed,
                                        int64_t step, int rank, int num_ranks) {
    std::mt19937_64 rng(seed * 0x9e3779b97f4a7c15ull ^ static_cast<uint64_t>(step));
    std::uniform_int_distribution<int64_t> start(0, static_cast<int64_t>(stream.size()) - ctx - 1);
    std::vector<int64_t> starts(static_cast<size_t>(batch));
    for (int64_t& s : starts) s = start(rng);
    const IndexRange mine = split_over_ranks(batch, rank, num_ranks);
    std::vector<TrainSequence> out;
    for (int64_t b = mine.begin; b < mine.end; ++b) out.push_back(window(stream, starts[static_cast<size_t>(b)], ctx));
    return out;
}

namespace {

int64_t validation_window_count(const std::vector<int32_t>& stream, int64_t ctx, int count) {
    return std::max<int64_t>(0, std::min<int64_t>(count, (static_cast<int64_t>(stream.size()) - 1) / ctx));
}

}  // namespace

std::vector<int32_t> validation_tokens(const std::vector<int32_t>& stream, int64_t ctx, int count) {
    const int64_t n = validation_window_count(stream, ctx, count);
    return n == 0 ? std::vector<int32_t>{} : std::vector<int32_t>(stream.begin(), stream.begin() + n * ctx + 1);
}

std::vector<TrainSequence> validation_windows(const std::vector<int32_t>& stream, int64_t ctx, int count, int rank,
                                              int num_ranks) {
    const int64_t n = validation_window_count(stream, ctx, count);
    const IndexRange mine = split_over_ranks(n, rank, num_ranks);
    std::vector<TrainSequence> out;
    for (int64_t w = mine.begin; w < mine.end; ++w) out.push_back(window(stream, w * ctx, ctx));
    return out;
}

double bigram_nll(const std::vector<int32_t>& train, const std::vector<TrainSequence>& windows, int vocab_size) {
    // Add-0.1 smoothed pair counts; the pairs seen in a hash map (a V x V table would be 10 GB at V = 50k).
    const uint64_t v = static_cast<uint64_t>(vocab_size);
    std::unordered_map<uint64_t, double> pair;
    std::vector<double> row(v, 0.1 * static_cast<double>(v));
    for (size_t i = 0; i + 1 < train.size(); ++i) {
        pair[static_cast<uint64_t>(train[i]) * v + static_cast<uint64_t>(train[i + 1])] += 1;
        row[static_cast<size_t>(train[i])] += 1;
    }
    double nll = 0;
    int64_t n = 0;
    for (const TrainSequence& q : windows)
        for (size_t t = 0; t < q.ids.size(); ++t) {
            if (q.targets[t] < 0) continue;  // kIgnoreIndex: nothing scored
            const uint64_t a = static_cast<uint64_t>(q.ids[t]), b = static_cast<uint64_t>(q.targets[t]);
            const auto it = pair.find(a * v + b);
            nll -= std::log((0.1 + (it == pair.end() ? 0.0 : it->second)) / row[a]);
            ++n;
        }
    return n > 0 ? nll / static_cast<double>(n) : NAN;
}

}  // namespace epmoe
