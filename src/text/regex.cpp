#define PCRE2_CODE_UNIT_WIDTH 8
#include "regex.hpp"

#include <pcre2.h>

#include "epmoe/base/error.hpp"
#include "epmoe/text/utf8.hpp"

namespace epmoe {

struct Regex::Impl {
    pcre2_code* code = nullptr;
    pcre2_match_data* data = nullptr;
};

Regex::Regex(const std::string& pattern, const std::string& where) : impl_(std::make_unique<Impl>()) {
    int err = 0;
    PCRE2_SIZE at = 0;
    impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &at, nullptr);
    if (!impl_->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        fail(where, ": regex ", pattern, " does not compile at offset ", at, ": ", reinterpret_cast<char*>(msg));
    }
    pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE);  // interpreted if JIT is unavailable
    impl_->data = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
}

Regex::~Regex() {
    pcre2_match_data_free(impl_->data);
    pcre2_code_free(impl_->code);
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
    std::vector<std::pair<size_t, size_t>> out;
    size_t pos = 0;
    while (pos <= text.size()) {
        const int rc = pcre2_match(impl_->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), pos,
                                   PCRE2_NO_UTF_CHECK, impl_->data, nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) fail("regex match failed (PCRE2 error ", rc, ")");
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(impl_->data);
        out.emplace_back(ov[0], ov[1]);
        if (ov[1] > ov[0]) {
            pos = ov[1];
        } else {
            if (ov[1] >= text.size()) break;
            pos = ov[1] + utf8_char_len(text, ov[1]);
        }
    }
    return out;
}

}  // namespace epmoe
