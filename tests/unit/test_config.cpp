#include <gtest/gtest.h>
#include "epmoe/config.hpp"
TEST(Config, DefaultsValidate) { EXPECT_NO_THROW(epmoe::Config::from_json(epmoe::default_config())); }
