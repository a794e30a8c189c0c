// The config as JSON: the built-in defaults and the layers laid over them (--config FILE.json, flags, --set).
// Every key has a default, and its default's JSON type is the key's type. Config::from_json (config.hpp)
// turns the merged JSON into typed, validated settings once; nothing reads JSON keys at run time.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace epmoe {

using Json = nlohmann::ordered_json;

// The built-in defaults: the embedded model and workload of `epmoe run` with no arguments.
const Json& default_config();

// Overlays `overlay` onto `base` key by key. Unknown keys and wrong types fail, naming `source` and the key.
void merge_config(Json& base, const Json& overlay, const std::string& source);

// Applies one "a.b=value" assignment, typing value by the key's default (int, float, bool or string).
void apply_set(Json& config, const std::string& assignment);

// Reads a JSON config file (an object of groups); fails naming the file when it is unreadable, a directory
// or not JSON.
Json read_config_file(const std::string& path);

}  // namespace epmoe
