// The time this process has spent inside its FP32 GEMMs of the dense parts and of training (ops/sgemm.cpp,
// oneDNN's dnnl_sgemm, or OpenBLAS's for some): what `epmoe train` logs as each step's `time_s.gemm`, the share of the
// step that is matmuls. Pure bookkeeping; no MPI.
#pragma once

#include <string>

namespace epmoe {

// Seconds spent inside those GEMMs since the process started, every thread's calls added up (with several
// threads calling at once, more than the wall time that passed). Differences of two readings time a stretch.
double sgemm_seconds();

// Which library runs the large weight-gradient products (ops/sgemm.hpp says the rule), for summaries: "onednn"
// or "openblas (core NAME)".
std::string sgemm_weight_grad_library();

}  // namespace epmoe
