#include "epmoe/run.hpp"

namespace epmoe {

int run(const mpi::Comm& world, const Config& config) { fail("epmoe run: not implemented yet"); }

}  // namespace epmoe
