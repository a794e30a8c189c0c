// The four family tables, each defined in its own file beside this one (not a public API: use arch_of).
#pragma once

#include "epmoe/model/arch.hpp"

namespace epmoe::arch {

extern const Arch kMixtral;   // mixtral.cpp
extern const Arch kOlmoe;     // olmoe.cpp
extern const Arch kQwen2Moe;  // qwen2_moe.cpp
extern const Arch kQwen3Moe;  // qwen3_moe.cpp

}  // namespace epmoe::arch
