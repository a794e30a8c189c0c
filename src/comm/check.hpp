// The one way src/comm/ treats a failed MPI call (not a public header).
#pragma once

#include <mpi.h>

namespace epmoe::mpi {

// Any MPI failure is a runtime failure of the job: say so once and end every rank within seconds.
void check(int rc, const char* what);

}  // namespace epmoe::mpi
