#include "epmoe/info.hpp"

#include <iostream>

namespace epmoe {

int info(const mpi::Comm& world, const Config& config, bool json) {
    if (world.rank() == 0) std::cout << "ranks: " << world.size() << "\n";
    return 0;
}

}  // namespace epmoe
