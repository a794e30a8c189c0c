// oneDNN's CPU engine and a stream per thread, shared by the oneDNN kernels (private to src/ops).
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

namespace epmoe {

// One engine; a stream per thread (a stream is not for concurrent use: run_tasks runs experts on several).
struct OneDnnRuntime {
    dnnl::engine& engine;
    dnnl::stream& stream;
};

inline OneDnnRuntime onednn_runtime() {
    static dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    thread_local dnnl::stream stream{engine};
    return {engine, stream};
}

}  // namespace epmoe
