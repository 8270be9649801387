// Small helpers shared by unit tests of different components (the engine's own test fixture is
// engine_fixture.hpp): substring checks, the line errors of a configuration file that must not
// parse, and nested JSON of a given depth.
#pragma once

#include <doctest/doctest.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/config_text.hpp"

namespace mqttws::test {

inline bool contains(std::string_view haystack, std::string_view needle) {
    return haystack.find(needle) != std::string_view::npos;
}

// The errors `File::parse(text)` reports (File: acl, password_file, ...); the text must not
// parse.
template <class File>
std::vector<line_error> parse_errors(std::string_view text) {
    auto parsed = File::parse(text);
    REQUIRE(std::holds_alternative<std::vector<line_error>>(parsed));
    return std::get<std::vector<line_error>>(parsed);
}

// `depth` nested JSON arrays: "[[...]]".
inline std::string nested_arrays(std::size_t depth) {
    return std::string(depth, '[') + std::string(depth, ']');
}

}  // namespace mqttws::test
