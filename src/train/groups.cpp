// The DP x EP communicators of `epmoe train` (include/epmoe/train/groups.hpp).
#include "epmoe/train/groups.hpp"

#include "epmoe/base/error.hpp"

namespace epmoe {
namespace {

// N after the check: ep_size, or the world's size for 0. Fails (Error naming the key and value) unless N > 0
// divides world_size. Every rank computes the same answer from the same values.
int checked_ep_size(int ep_size, int world_size) {
    const int n = ep_size == 0 ? world_size : ep_size;
    if (n <= 0 || world_size % n != 0)
        fail("train.ep_size ", ep_size, ": must divide the ", world_size,
             " ranks of the job (groups of ep_size consecutive ranks; 0 = all of them)");
    return n;
}

}  // namespace

TrainGroups::TrainGroups(const mpi::Comm& world, int ep_size)
    : world_(world),
      ep_([&] {
          int n = 0;
          mpi::all_or_none(world, [&] { n = checked_ep_size(ep_size, world.size()); });
          return world.split(world.rank() / n, world.rank());
      }()),
      replicas_(world.split(world.rank() % ep_.size(), world.rank())) {}

}  // namespace epmoe
