// Helpers shared by the safetensors reader, parser and writer. Private to src/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace epmoe::safetensors_detail {

// `text` made safe for a one-line message: control bytes become \xNN; past max_shown bytes it is cut
// with "...".
std::string printable(std::string_view text, size_t max_shown = 200);

// "'" + printable(name) + "'".
std::string quote(std::string_view name);

// "[8, 16]"; long shapes are cut with ", ...".
std::string shape_str(const std::vector<int64_t>& shape);

// Elements of `shape`; fails with "<where>shape [..] ..." on a negative dim or a product that does
// not fit in int64, or whose size in bytes (times elem_size) does not fit in uint64.
uint64_t checked_numel(const std::vector<int64_t>& shape, uint64_t elem_size, const std::string& where);

}  // namespace epmoe::safetensors_detail
