// The parameter registry, the gradient norm's share and clipping, AdamW and the learning-rate schedule
// (include/epmoe/train/optim.hpp). Pure compute: the collectives over the registry are in grad_sync.cpp.
#include "epmoe/train/optim.hpp"

#include <cmath>
#include <numbers>

#include "epmoe/base/error.hpp"
#include "epmoe/ops/norm.hpp"

namespace epmoe {

bool weight_decay_applies(ParamKind kind, bool decay_router) {
    switch (kind) {
        case ParamKind::kWeight:
            return true;
        case ParamKind::kRouter:
            return decay_router;
        case ParamKind::kNorm:
        case ParamKind::kBias:
            return false;
    }
    return true;
}

size_t ParamRegistry::add(Param p) {
    EPMOE_ASSERT(p.value.size() == p.grad.size());
    params_.push_back(std::move(p));
    return params_.size() - 1;
}

uint64_t ParamRegistry::numel() const {
    uint64_t n = 0;
    for (const Param& p : params_) n += p.value.size();
    return n;
}

void ParamRegistry::zero_grad() {
    for (const Param& p : params_) std::fill(p.grad.begin(), p.grad.end(), 0.0f);
}

double grad_sq_share(const ParamRegistry& params) {
    double sum_sq = 0;  // in registration order
    for (const Param& p : params.params()) {
        if (p.replicas != nullptr && p.replicas->rank() != 0) continue;  // counted by the replicas' rank 0
        sum_sq += sum_of_squares(p.grad.data(), p.grad.size());
    }
    return sum_sq;
}

void clip_gradients(const ParamRegistry& params, double norm, double max_norm) {
    if (!std::isfinite(max_norm) || max_norm <= 0) fail("gradient clipping norm ", max_norm, " must be positive");
    if (!std::isfinite(norm)) return;
    const double coef = max_norm / (norm + 1e-6);
    if (coef >= 1.0) return;
    const float scale = static_cast<float>(coef);
    for (const Param& p : params.params())
        for (float& g : p.grad) g *= scale;
}

AdamWConfig::AdamWConfig(double b1, double b2, double epsilon, double decay)
    : beta1(b1), beta2(b2), eps(epsilon), weight_decay(decay) {
    auto in_unit = [](double b) { return std::isfinite(b) && b >= 0 && b < 1; };
    if (!in_unit(beta1)) fail("AdamW beta1 = ", beta1, " must be in [0, 1)");
    if (!in_unit(beta2)) fail("AdamW beta2 = ", beta2, " must be in [0, 1)");
    if (!std::isfinite(eps) || eps <= 0) fail("AdamW eps = ", eps, " must be a positive number");
    if (!std::isfinite(weight_decay) || weight_decay < 0)
        fail("AdamW weight decay = ", weight_decay, " must be a finite number >= 0");
}

AdamW::AdamW(const ParamRegistry& params, AdamWConfig config) : config_(config) {
    exp_avg_.resize(params.size());
    exp_avg_sq_.resize(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
        exp_avg_[i].assign(params[i].value.size(), 0.0f);
        exp_avg_sq_[i].assign(params[i].value.size(), 0.0f);
    }
}

void AdamW::step(const ParamRegistry& params, double lr) {
    EPMOE_ASSERT(params.size() == exp_avg_.size());
    if (!std::isfinite(lr) || lr < 0) fail("learning rate ", lr, " at step ", steps_, " must be finite and >= 0");
    ++steps_;
    const double t = static_cast<double>(steps_);
    // The scalars as torch 1.13's _single_tensor_adamw computes them in Python (double), each rounded to float
    // where the tensor op takes it.
    const float beta1 = static_cast<float>(config_.beta1), beta2 = static_cast<float>(config_.beta2);
    const float one_minus_beta1 = static_cast<float>(1.0 - config_.beta1);
    const float one_minus_beta2 = static_cast<float>(1.0 - config_.beta2);
    const double bias_correction1 = 1.0 - std::pow(config_.beta1, t);
    const double bias_correction2 = 1.0 - std::pow(config_.beta2, t);
    const float neg_step_size = static_cast<float>(-(lr / bias_correction1));
    const float bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
    const float eps = static_cast<float>(config_.eps);
    for (size_t i = 0; i < params.size(); ++i) {
        const Param& p = params[i];
        EPMOE_ASSERT(p.value.size() == exp_avg_[i].size());
        const float decay = static_cast<float>(1.0 - lr * (p.decay ? config_.weight_decay : 0.0));
        float* __restrict value = p.value.data();  // four distinct buffers: lets the loop vectorise
        const float* __restrict grad = p.grad.data();
        float* __restrict m = exp_avg_[i].data();
        float* __restrict v = exp_avg_sq_[i].data();
        const size_t n = p.value.size();
        for (size_t j = 0; j < n; ++j) {
            const float g = grad[j];
            value[j] *= decay;
            m[j] = m[j] * beta1 + one_minus_beta1 * g;      // exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
            v[j] = v[j] * beta2 + one_minus_beta2 * g * g;  // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
            const float denom = std::sqrt(v[j]) / bias_correction2_sqrt + eps;
            value[j] += neg_step_size * m[j] / denom;  // param.addcdiv_(exp_avg, denom, value=-step_size)
        }
    }
}

LrSchedule::LrSchedule(double max_lr, double min_lr, int64_t warmup_steps, int64_t decay_steps)
    : max_lr_(max_lr), min_lr_(min_lr), warmup_steps_(warmup_steps), decay_steps_(decay_steps) {
    if (!std::isfinite(max_lr) || max_lr < 0) fail("learning rate ", max_lr, " must be finite and >= 0");
    if (!std::isfinite(min_lr) || min_lr < 0 || min_lr > max_lr)
        fail("minimum learning rate ", min_lr, " must be finite and in [0, ", max_lr, "] (the learning rate)");
    if (warmup_steps < 0) fail("warmup steps ", warmup_steps, " must be >= 0");
    if (decay_steps < warmup_steps)
        fail("decay steps ", decay_steps, " must be >= the warmup steps (", warmup_steps, ")");
}

double LrSchedule::at(int64_t step) const {
    EPMOE_ASSERT(step >= 0);
    if (step < warmup_steps_) return max_lr_ * static_cast<double>(step + 1) / static_cast<double>(warmup_steps_ + 1);
    if (step >= decay_steps_) return min_lr_;
    const double ratio = static_cast<double>(step - warmup_steps_) / static_cast<double>(decay_steps_ - warmup_steps_);
    const double coeff = 0.5 * (1.0 + std::cos(std::numbers::pi * ratio));
    return min_lr_ + coeff * (max_lr_ - min_lr_);
}

}  // namespace epmoe
