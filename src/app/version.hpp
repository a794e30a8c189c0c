// What build this is: the project version and the commit it was configured at (summary.json, --version).
#pragma once

namespace epmoe {

// The project version, e.g. "0.1.0".
const char* version();
// `git describe --always --dirty` of the source tree when CMake configured the build, or "unknown" outside a
// git checkout.
const char* git_describe();
// The source tree CMake configured the build from (where `epmoe report` finds src/app/report.py when the build
// folder is outside the tree).
const char* source_dir();

}  // namespace epmoe
