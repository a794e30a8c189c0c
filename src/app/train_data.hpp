// What `epmoe train` trains on: token files (train.data, train.val_data), or with none the bytes of a text
// corpus a Debian package ships (train.corpus, vocabulary 256); the seeded windows of each step's global batch
// and this rank's share; the validation windows; and a bigram model of the same bytes as the baseline.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "epmoe/base/config.hpp"
#include "epmoe/train/decoder_train.hpp"

namespace epmoe {

struct TrainData {
    std::vector<int32_t> train, val;  // token streams
    std::string source;               // for logs and summary.json
};

// Reads the token files (ids checked against vocab_size), or the corpus as bytes (vocab_size must be >= 256);
// holds out the last val_fraction of the stream when there is no val_data (sampler sequential: validates on
// the training stream itself). Fails naming the file when a stream
// is shorter than one window of ctx + 1 tokens.
TrainData load_train_data(const Config& config, int vocab_size);

// This rank's share of step `step`'s global batch: `batch` windows of ctx + 1 tokens at starts drawn from a
// generator seeded by (seed, step), the same on every rank, split over the ranks in order.
std::vector<TrainSequence> sample_batch(const std::vector<int32_t>& stream, int64_t ctx, int batch, uint64_t seed,
                                        int64_t step, int rank, int num_ranks);

// The tokens the first `count` disjoint windows of ctx + 1 tokens of the stream read (window w starts at w ctx;
// fewer windows if short): its first n ctx + 1 tokens, empty when not one window fits.
std::vector<int32_t> validation_tokens(const std::vector<int32_t>& stream, int64_t ctx, int count);

// This rank's share of the first `count` disjoint windows of ctx + 1 tokens of the stream (fewer if short).
std::vector<TrainSequence> validation_windows(const std::vector<int32_t>& stream, int64_t ctx, int count, int rank,
                                              int num_ranks);

// The mean NLL (nats) on the validation windows' targets of a bigram model counted on the training stream,
// add-0.1 smoothed: what a model that sees only the previous token can do.
double bigram_nll(const std::vector<int32_t>& train, const std::vector<TrainSequence>& windows, int vocab_size);

}  // namespace epmoe
