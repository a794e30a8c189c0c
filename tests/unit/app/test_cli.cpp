// `epmoe run`'s command line (src/app/cli.cpp): defaults <- --config FILE <- named flags <- --set, help, and
// errors naming the bad flag or value.
// The suite keeps its name from tests/unit/test_config.cpp, where this test was before the move.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "app/cli.hpp"
#include "epmoe/base/config.hpp"
#include "epmoe/base/error.hpp"

namespace epmoe {
namespace {

// The message of the Error that fn throws ("" if none).
template <typename Fn>
std::string cli_error(Fn fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// Writes text to a file under gtest's TempDir; returns its path.
std::string write_cli_config(const std::string& name, const std::string& text) {
    std::string path = ::testing::TempDir() + name;
    std::ofstream(path) << text;
    return path;
}

TEST(Config, RunArgumentsMergeInOrder) {
    std::string file = write_cli_config("order.json", R"({"workload": {"steps": 5, "tokens_per_rank": 7}, "seed": 1})");
    std::string help;
    // file sets steps 5; the flag overrides with 6; --set overrides the flag with 8. tokens_per_rank: file only.
    auto c = cli::parse_run({"--config", file, "--steps", "6", "--set", "workload.steps=8", "--seed", "9"}, help);
    ASSERT_TRUE(c.has_value());
    EXPECT_EQ(c->workload.steps, 8);
    EXPECT_EQ(c->workload.tokens_per_rank, 7);
    EXPECT_EQ(c->seed, 9u);
    EXPECT_EQ((*c->json)["workload"]["steps"], 8);  // config.json records the effective value
    c = cli::parse_run({"--policy", "none", "--capacity-factor", "1.5", "--out", "x", "-q"}, help);
    EXPECT_DOUBLE_EQ(c->routing.capacity_factor, 1.5);
    EXPECT_EQ(c->output.dir, "x");
    EXPECT_TRUE(c->output.quiet);
    EXPECT_FALSE(cli::parse_run({"--help"}, help).has_value());
    EXPECT_NE(help.find("--capacity-factor"), std::string::npos);
    EXPECT_NE(cli_error([&] { cli::parse_run({"--stpes", "3"}, help); }).find("--stpes"), std::string::npos);
    EXPECT_NE(cli_error([&] {
                  cli::parse_run({"--steps", "three"}, help);
              }).find("workload.steps=three"),
              std::string::npos);
    EXPECT_NE(cli_error([&] { cli::parse_run({"extra"}, help); }).find("extra"), std::string::npos);
    // Names are checked against the registries; a flag whose value was forgotten is named, not the next word.
    EXPECT_NE(cli_error([&] {
                  cli::parse_run({"--policy", "fastest"}, help);
              }).find("policy.name = \"fastest\""),
              std::string::npos);
    EXPECT_NE(cli_error([&] {
                  cli::parse_run({"--placement", "nearest"}, help);
              }).find("placement.name = \"nearest\""),
              std::string::npos);
    EXPECT_NE(cli_error([&] {
                  cli::parse_run({"--seed", "--out", "x"}, help);
              }).find("--seed needs a value, but the next word is the flag --out"),
              std::string::npos);
    EXPECT_NE(cli_error([&] {
                  cli::parse_run({"--config", ::testing::TempDir()}, help);
              }).find("is a directory"),
              std::string::npos);
    EXPECT_TRUE(cli::parse_run({"--overwrite"}, help)->output.overwrite);
}

}  // namespace
}  // namespace epmoe
