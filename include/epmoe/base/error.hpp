// Errors: one type for bad input and unusable environments, one macro for bugs.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace epmoe {

// Bad input or an unusable environment. main() prints "epmoe: error: <what()>" and exits 2.
// The message names the file, key or value; it never carries file:line (that is for bugs).
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// An Error that every rank of the job has agreed on (see mpi::all_or_none), so every rank can
// exit 2 cleanly instead of aborting the job.
class AgreedError : public Error {
public:
    using Error::Error;
};

// Concatenates parts with operator<< (GCC 12 has no <format>).
template <typename... Parts>
std::string cat(const Parts&... parts) {
    std::ostringstream os;
    (os << ... << parts);
    return os.str();
}

// Throws Error(cat(parts...)): fail("top_k ", k, " > num_experts ", e).
template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
    throw Error(cat(parts...));
}

// What errno value err means, for an error line: "permission denied (EACCES)", "no such file (ENOENT)",
// "is a directory (EISDIR)", ..., else strerror's text and the number.
std::string errno_text(int err);

// Internal invariant broken: prints file:line and aborts. Not for user input.
[[noreturn]] void assert_failed(const char* cond, const char* file, int line);

}  // namespace epmoe

#define EPMOE_ASSERT(cond)                                              \
    do {                                                                \
        if (!(cond)) ::epmoe::assert_failed(#cond, __FILE__, __LINE__); \
    } while (0)
