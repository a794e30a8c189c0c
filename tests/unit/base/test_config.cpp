// Config (src/base/config.cpp): defaults, --set typed by the default, file merges, validation messages. The
// merge order of `epmoe run`'s flags is tested in tests/unit/app/test_cli.cpp.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "epmoe/base/config.hpp"
#include "epmoe/base/error.hpp"

namespace epmoe {
namespace {

// The message of the Error that fn throws ("" if none).
template <typename Fn>
std::string error_of(Fn fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

std::string write_temp(const std::string& name, const std::string& text) {
    std::string path = ::testing::TempDir() + name;
    std::ofstream(path) << text;
    return path;
}

TEST(Config, DefaultsValidate) {
    Config c = Config::from_json(default_config());
    EXPECT_EQ(c.model.num_experts, 8);
    EXPECT_EQ(c.model.top_k, 2);
    EXPECT_EQ(c.policy.name, "none");
    EXPECT_EQ(c.energy.source, "auto");
}

TEST(Config, SetIsTypedByTheDefault) {
    Json j = default_config();
    apply_set(j, "model.top_k=4");
    apply_set(j, "model.norm_topk_prob=false");
    apply_set(j, "model.rms_norm_eps=1e-5");
    apply_set(j, "workload.skew=2");
    apply_set(j, "model.gate=sigmoid");
    EXPECT_TRUE(j["model"]["top_k"].is_number_integer());
    EXPECT_TRUE(j["workload"]["skew"].is_number_float());  // "2" for a float key stays a float
    Config c = Config::from_json(j);
    EXPECT_EQ(c.model.top_k, 4);
    EXPECT_FALSE(c.model.norm_topk_prob);
    EXPECT_DOUBLE_EQ(c.model.rms_norm_eps, 1e-5);
    EXPECT_EQ(c.model.gate, GateKind::kSigmoid);
}

TEST(Config, SetRejectsBadValuesNamingTheKey) {
    Json j = default_config();
    EXPECT_NE(error_of([&] { apply_set(j, "model.top_k=2.5"); }).find("model.top_k=2.5: must be an integer"),
              std::string::npos);
    EXPECT_NE(error_of([&] { apply_set(j, "model.norm_topk_prob=maybe"); }).find("must be a boolean"),
              std::string::npos);
    EXPECT_NE(error_of([&] { apply_set(j, "model.topk=2"); }).find("unknown config key 'model.topk'"),
              std::string::npos);
    EXPECT_NE(error_of([&] { apply_set(j, "modle.top_k=2"); }).find("unknown config key 'modle.top_k'"),
              std::string::npos);
    EXPECT_NE(error_of([&] { apply_set(j, "model=3"); }).find("model is a group"), std::string::npos);
    EXPECT_NE(error_of([&] { apply_set(j, "model.top_k"); }).find("expected key=value"), std::string::npos);
    EXPECT_NE(error_of([&] { apply_set(j, "seed=12x"); }).find("seed=12x"), std::string::npos);
}

TEST(Config, ValidationNamesKeyAndValue) {
    auto invalid = [](const std::string& set) {
        Json j = default_config();
        return error_of([&] {
            apply_set(j, set);
            Config::from_json(j);
        });
    };
    EXPECT_EQ(invalid("model.top_k=9"), "config key model.top_k = 9: must be <= 8");
    EXPECT_EQ(invalid("model.d_model=-4"), "config key model.d_model = -4: must be >= 1");
    EXPECT_EQ(invalid("workload.steps=0"), "config key workload.steps = 0: must be >= 1");
    EXPECT_EQ(invalid("model.gate=relu"), "config key model.gate = \"relu\": must be one of softmax, sigmoid");
    EXPECT_EQ(invalid("model.rms_norm_eps=0"), "config key model.rms_norm_eps = 0.0: must be > 0");
    EXPECT_NE(invalid("routing.capacity_factor=nan").find("routing.capacity_factor=nan"), std::string::npos);
    EXPECT_NE(invalid("workload.skew=inf").find("workload.skew=inf"), std::string::npos);
    EXPECT_NE(invalid("energy.source=solar").find("energy.source"), std::string::npos);
    EXPECT_NE(invalid("seed=-1").find("seed = -1"), std::string::npos);
}

TEST(Config, FileMergeChecksKeysAndTypes) {
    Json j = default_config();
    merge_config(j, Json::parse(R"({"model": {"top_k": 1, "gate": "sigmoid"}, "seed": 3})"), "f.json");
    EXPECT_EQ(j["model"]["top_k"], 1);
    EXPECT_EQ(j["model"]["num_experts"], 8);  // untouched keys keep their defaults
    EXPECT_EQ(error_of([&] { merge_config(j, Json::parse(R"({"model": {"tpo_k": 1}})"), "f.json"); }),
              "f.json: unknown config key 'model.tpo_k' (known here: path, layers, num_layers, d_model, d_ff, "
              "num_experts, top_k, gate, norm_topk_prob, rms_norm_eps, vocab_size, num_heads, num_kv_heads, "
              "head_dim, rope_theta, sliding_window, qkv_bias, qk_norm, tie_word_embeddings)");
    EXPECT_EQ(error_of([&] { merge_config(j, Json::parse(R"({"model": {"top_k": 1.5}})"), "f.json"); }),
              "f.json: config key model.top_k = 1.5 must be an integer");
    EXPECT_EQ(error_of([&] { merge_config(j, Json::parse(R"({"model": 4})"), "f.json"); }),
              "f.json: config key model = 4 must be a group of keys");
    EXPECT_NE(error_of([&] { merge_config(j, Json::parse("[1]"), "f.json"); }).find("JSON object"), std::string::npos);
}

TEST(Config, ReadFileErrorsNameTheFile) {
    EXPECT_NE(error_of([] { read_config_file("/nonexistent/c.json"); }).find("/nonexistent/c.json: cannot read"),
              std::string::npos);
    std::string bad = write_temp("bad_config.json", "{\"model\": ");
    EXPECT_NE(error_of([&] { read_config_file(bad); }).find(bad + ": not valid JSON"), std::string::npos);
}

}  // namespace
}  // namespace epmoe
