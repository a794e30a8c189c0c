#include "epmoe/base/error.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace epmoe {

std::string errno_text(int err) {
    switch (err) {
        case EACCES: return "permission denied (EACCES)";
        case EPERM: return "operation not permitted (EPERM)";
        case ENOENT: return "no such file (ENOENT)";
        case EISDIR: return "is a directory (EISDIR)";
        case ENOSPC: return "no space left on the device (ENOSPC)";
        default: return cat(std::strerror(err), " (errno ", err, ")");
    }
}

void assert_failed(const char* cond, const char* file, int line) {
    std::fprintf(stderr, "epmoe: internal error: assertion '%s' failed at %s:%d\n", cond, file, line);
    std::fflush(stderr);
    std::abort();
}

}  // namespace epmoe
