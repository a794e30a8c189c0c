// libFuzzer target: the tokenizer.json parser and the encoder. An input that starts with '{' is a
// tokenizer.json: it must parse or throw epmoe::Error, and a tokenizer that parses must encode and decode a
// fixed text. Otherwise the first byte picks one of the fixture tokenizers (tests/fixtures/tokenizers/) and the
// rest is text to encode (any bytes: invalid UTF-8 included) and decode. Anything else (a crash, a sanitizer report,
// another exception, a hang) is a finding. Built by tests/fuzz/CMakeLists.txt (EPMOE_FUZZ=ON).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "epmoe/base/error.hpp"
#include "epmoe/text/tokenizer.hpp"

namespace {

const std::vector<std::unique_ptr<epmoe::Tokenizer>>& fixtures() {
    static const std::vector<std::unique_ptr<epmoe::Tokenizer>> all = [] {
        std::vector<std::unique_ptr<epmoe::Tokenizer>> out;
        for (const char* kind : {"neox", "qwen2", "llama", "metaspace", "sp"})
            out.push_back(epmoe::load_tokenizer(std::string(EPMOE_FIXTURES) + "/tokenizers/" + kind));
        return out;
    }();
    return all;
}

void round_trip(const epmoe::Tokenizer& tok, std::string_view text) {
    const std::vector<int32_t> ids = tok.encode(text, true);
    for (int32_t id : ids)
        if (id < 0 || id >= tok.vocab_size()) __builtin_trap();
    (void)tok.decode(ids, false);
    (void)tok.decode(ids, true);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const std::string_view all_bytes(reinterpret_cast<const char*>(data), size);
    if (data[0] != '{') {
        const auto& all = fixtures();
        round_trip(*all[data[0] % all.size()], all_bytes.substr(1));
        return 0;
    }
    try {
        const auto tok = epmoe::parse_hf_tokenizer(all_bytes, "", "fuzz/tokenizer.json");
        round_trip(*tok, "Hello world, 123 <|endoftext|> \xe6\x97\xa5\xe6\x9c\xac \xff end\n");
    } catch (const epmoe::Error&) {
    }
    return 0;
}
