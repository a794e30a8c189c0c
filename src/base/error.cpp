#include "epmoe/base/error.hpp"

#include <cstdio>
#include <cstdlib>

namespace epmoe {

void assert_failed(const char* cond, const char* file, int line) {
    std::fprintf(stderr, "epmoe: internal error: assertion '%s' failed at %s:%d\n", cond, file, line);
    std::fflush(stderr);
    std::abort();
}

}  // namespace epmoe
