#include "epmoe/text/utf8.hpp"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

#include "epmoe/base/error.hpp"

namespace epmoe {
namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 with bad = the length of its maximal invalid prefix
// (the Unicode "maximal subpart" that one U+FFFD replaces).
size_t valid_len(std::string_view s, size_t i, size_t* bad) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) return 1;
    size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else {
        *bad = 1;
        return 0;
    }
    for (size_t k = 1; k <= need; ++k) {
        if (i + k >= s.size()) {
            *bad = k;
            return 0;
        }
        const auto b = static_cast<unsigned char>(s[i + k]);
        const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (b < l || b > h) {
            *bad = k;
            return 0;
        }
    }
    return need + 1;
}

}  // namespace

std::string repair_utf8(std::string_view text, size_t* replaced) {
    std::string out;
    out.reserve(text.size());
    size_t count = 0;
    for (size_t i = 0; i < text.size();) {
        size_t bad = 0;
        const size_t n = valid_len(text, i, &bad);
        if (n > 0) {
            out.append(text.substr(i, n));
            i += n;
        } else {
            out.append("\xEF\xBF\xBD");
            ++count;
            i += bad;
        }
    }
    if (replaced) *replaced = count;
    return out;
}

size_t utf8_char_len(std::string_view s, size_t i) {
    const auto b = static_cast<unsigned char>(s[i]);
    const size_t n = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
    return std::min(n, s.size() - i);
}

int32_t utf8_decode(std::string_view s, size_t i, size_t* len) {
    utf8proc_int32_t cp = 0;
    const utf8proc_ssize_t n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                                static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    if (n <= 0) {
        *len = 1;
        return 0xFFFD;
    }
    *len = static_cast<size_t>(n);
    return cp;
}

void utf8_append(std::string& out, int32_t cp) {
    utf8proc_uint8_t buf[4];
    const utf8proc_ssize_t n = utf8proc_encode_char(cp, buf);
    out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

std::string unicode_normalize(std::string_view text, std::string_view form) {
    int options = UTF8PROC_STABLE;
    if (form == "NFC")
        options |= UTF8PROC_COMPOSE;
    else if (form == "NFD")
        options |= UTF8PROC_DECOMPOSE;
    else if (form == "NFKC")
        options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    else if (form == "NFKD")
        options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    else
        fail("unknown Unicode normal form ", form);
    utf8proc_uint8_t* raw = nullptr;
    const utf8proc_ssize_t n =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()), static_cast<utf8proc_ssize_t>(text.size()),
                     &raw, static_cast<utf8proc_option_t>(options));
    std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(raw, &std::free);
    if (n < 0) fail("Unicode normalization (", form, "): ", utf8proc_errmsg(n));
    return std::string(reinterpret_cast<const char*>(raw), static_cast<size_t>(n));
}

bool is_unicode_space(int32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

bool is_plain_char(int32_t cp) {
    if (is_unicode_space(cp) || (cp >= 0x2000 && cp <= 0x206F) || cp == 0xFEFF) return false;
    switch (utf8proc_category(cp)) {
        case UTF8PROC_CATEGORY_CN:
        case UTF8PROC_CATEGORY_CC:
        case UTF8PROC_CATEGORY_CF:
        case UTF8PROC_CATEGORY_CO:
        case UTF8PROC_CATEGORY_CS:
        case UTF8PROC_CATEGORY_MN:
        case UTF8PROC_CATEGORY_MC:
        case UTF8PROC_CATEGORY_ME:
        case UTF8PROC_CATEGORY_SK:
        case UTF8PROC_CATEGORY_ZS:
        case UTF8PROC_CATEGORY_ZL:
        case UTF8PROC_CATEGORY_ZP:
            return false;
        default:
            return true;
    }
}

bool plain_char_at(std::string_view text, size_t pos, bool after) {
    size_t begin = pos;
    if (!after) {  // back over at most three continuation bytes to the lead byte
        if (pos == 0) return false;
        begin = pos - 1;
        while (begin > 0 && pos - begin < 4 && (static_cast<unsigned char>(text[begin]) & 0xC0) == 0x80) --begin;
    }
    if (begin >= text.size()) return false;
    const std::string_view one = text.substr(begin, utf8_char_len(text, begin));
    if (repair_utf8(one) != one || (!after && begin + one.size() != pos)) return false;  // invalid UTF-8
    size_t len = 0;
    return is_plain_char(utf8_decode(one, 0, &len));
}

bool is_word_char(int32_t cp) {
    switch (utf8proc_category(cp)) {
        case UTF8PROC_CATEGORY_LU:
        case UTF8PROC_CATEGORY_LL:
        case UTF8PROC_CATEGORY_LT:
        case UTF8PROC_CATEGORY_LM:
        case UTF8PROC_CATEGORY_LO:
        case UTF8PROC_CATEGORY_MN:
        case UTF8PROC_CATEGORY_MC:
        case UTF8PROC_CATEGORY_ME:
        case UTF8PROC_CATEGORY_ND:
        case UTF8PROC_CATEGORY_NL:
        case UTF8PROC_CATEGORY_NO:
        case UTF8PROC_CATEGORY_PC:
            return true;
        default:
            return false;
    }
}

}  // namespace epmoe
