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
#include "core/error.hpp"
#include "core/requests.hpp"

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

// ---- request decoding (frame_decoder) ----

// Decodes `text`, which must be a request of kind T.
template <class T>
T decode_as(frame_decoder& dec, std::string_view text) {
    auto result = dec.decode(text);
    if (auto* failure = std::get_if<decode_failure>(&result)) {
        FAIL("expected a request, got " << wire_name(failure->code) << ": " << failure->message
                                        << "\n  frame: " << text);
    }
    auto& request = std::get<client_request>(result);
    REQUIRE_MESSAGE(std::holds_alternative<T>(request), "wrong request kind for " << text);
    return std::get<T>(std::move(request));
}

template <class T>
T decode_as(std::string_view text) {
    frame_decoder dec;
    return decode_as<T>(dec, text);
}

// Decodes `text`, which must fail (with a message).
inline decode_failure decode_fails(frame_decoder& dec, std::string_view text) {
    auto result = dec.decode(text);
    REQUIRE_MESSAGE(std::holds_alternative<decode_failure>(result), "accepted: " << text);
    decode_failure failure = std::get<decode_failure>(std::move(result));
    CHECK_FALSE(failure.message.empty());
    return failure;
}

inline decode_failure decode_fails(std::string_view text) {
    frame_decoder dec;
    return decode_fails(dec, text);
}

// The failure is a bad_request (the default answer to a malformed frame).
inline void expect_bad_request(std::string_view text, std::string_view msgid_json = {}) {
    INFO("frame: " << text);
    const auto failure = decode_fails(text);
    CHECK(failure.code == errc::bad_request);
    CHECK(failure.id.json == msgid_json);
}

}  // namespace mqttws::test
