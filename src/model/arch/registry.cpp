// The family tables by Family and by config.json's model_type.
#include "epmoe/base/error.hpp"
#include "families.hpp"

namespace epmoe {

const char* family_name(Family family) {
    switch (family) {
        case Family::kMixtral:
            return "mixtral";
        case Family::kOlmoe:
            return "olmoe";
        case Family::kQwen2Moe:
            return "qwen2_moe";
        case Family::kQwen3Moe:
            return "qwen3_moe";
    }
    return "?";
}

const Arch& arch_of(Family family) {
    switch (family) {
        case Family::kMixtral:
            return arch::kMixtral;
        case Family::kOlmoe:
            return arch::kOlmoe;
        case Family::kQwen2Moe:
            return arch::kQwen2Moe;
        case Family::kQwen3Moe:
            return arch::kQwen3Moe;
    }
    EPMOE_ASSERT(!"a Family without a table");
    return arch::kMixtral;
}

const Arch* arch_for_model_type(const std::string& model_type) {
    for (const Arch* a : {&arch::kMixtral, &arch::kOlmoe, &arch::kQwen2Moe, &arch::kQwen3Moe})
        if (model_type == family_name(a->family)) return a;
    return nullptr;
}

}  // namespace epmoe
