// RMSNorm, as Hugging Face's MixtralRMSNorm/Qwen2MoeRMSNorm compute it (in double here). Pure compute.
#pragma once

#include <span>

namespace epmoe {

// out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * g.  x, out: [num_tokens, d_model]; g: [d_model].
void rms_norm(std::span<const float> x, std::span<const float> g, double eps, std::span<float> out);

}  // namespace epmoe
