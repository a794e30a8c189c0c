// Entry point: start MPI, dispatch the command, and map errors to the contract (one line, exit 2).
#include <cstdio>
#include <exception>

#include "app/cli.hpp"
#include "app/openblas_core.hpp"
#include "epmoe/base/error.hpp"
#include "epmoe/comm/mpi.hpp"

int main(int argc, char** argv) {
    epmoe::correct_openblas_core(argv);  // may run the program again, before MPI starts
    epmoe::mpi::Session session(&argc, &argv);
    int code = 0;
    {
        epmoe::mpi::Comm world(MPI_COMM_WORLD);
        try {
            code = epmoe::cli::dispatch(world, argc, argv);
        } catch (const epmoe::AgreedError& e) {
            // Every rank holds the same message: rank 0 says it, all exit 2 together.
            if (world.rank() == 0) std::fprintf(stderr, "epmoe: error: %s\n", e.what());
            code = 2;
        } catch (const epmoe::Error& e) {
            // Only this rank saw it: the others may be waiting in a collective, so end the job.
            std::fprintf(stderr, "epmoe: error: %s\n", e.what());
            epmoe::mpi::abort_job(2);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "epmoe: internal error: %s\n", e.what());
            epmoe::mpi::abort_job(1);
        }
    }
    return code;
}
