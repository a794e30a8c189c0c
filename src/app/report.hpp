// `epmoe report DIR... [--out DIR] [--overwrite]`: figures (PNG) and a table across results directories (run,
// compare, simulate). The drawing is Python and matplotlib (src/app/report.py); this side checks the arguments,
// finds the script and a python3 that imports matplotlib, and runs it.
#pragma once

#include <string>
#include <vector>

#include "epmoe/comm/mpi.hpp"

namespace epmoe {

// The report script: $EPMOE_REPORT_SCRIPT if set, else src/app/report.py beside this binary's folder (build/epmoe
// -> ../src/app/report.py), else in the source tree CMake configured the build from. Fails naming where it looked.
std::string report_script();

// `epmoe report` on world (one process): args are the words after "report". Bad input (a DIR that does not exist or
// holds neither summary.json nor compare.csv, a non-empty --out without --overwrite, no matplotlib) is an
// AgreedError; otherwise returns the script's exit code.
int report_command(const mpi::Comm& world, const std::vector<std::string>& args);

}  // namespace epmoe
